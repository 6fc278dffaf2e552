"""Commands imported when they run (issue 25): ``faceledger`` has some 20 top-level commands in a
dozen modules; importing the others for one `compare` cost 12-22 ms (load ~5, after what compare
itself needs).

:func:`lazy_group` gives the root a click group whose ``commands`` mapping knows every command by
name and imports the module behind one only when it is looked up (click's "lazily loading
subcommands" pattern, on typer's group). ``--help`` and an unknown name's suggestions list every
name; ``--help`` imports every module, as before.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any, Callable

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo


class _LazyCommands(MutableMapping):
    """name -> click command, each made from ``"module:attribute"`` on first lookup (a typer app
    or a command function, converted as ``add_typer``/``command`` would); the names without
    importing anything, in the given order."""

    def __init__(self, made: dict, specs: dict[str, str], convert: Callable[[str, Any], Any]) -> None:
        self._made = dict(made)
        self._specs = {n: s for n, s in specs.items() if n not in self._made}
        self._convert = convert

    def __getitem__(self, name: str):
        if name not in self._made:
            module, _, attribute = self._specs[name].partition(":")  # KeyError: not a command
            self._made[name] = self._convert(name, getattr(importlib.import_module(module), attribute))
        return self._made[name]

    def __setitem__(self, name: str, command) -> None:
        self._made[name] = command

    def __delitem__(self, name: str) -> None:
        self._made.pop(name, None)
        self._specs.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._specs
        yield from (n for n in self._made if n not in self._specs)

    def __len__(self) -> int:
        return len(self._specs.keys() | self._made.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._made


class LazyGroup(TyperGroup):
    """A typer group whose sub-commands are imported when used (``specs``: name -> module:attribute)."""

    specs: dict[str, str] = {}
    pretty_exceptions_short = True

    def __init__(self, *, commands=None, **attrs: Any) -> None:
        super().__init__(commands=commands, **attrs)
        self.commands = _LazyCommands(self.commands, self.specs, self._convert)

    def _convert(self, name: str, obj: Any):
        if isinstance(obj, typer.Typer):
            return get_group_from_info(TyperInfo(obj, name=name), pretty_exceptions_short=self.pretty_exceptions_short,
                                       rich_markup_mode=self.rich_markup_mode, suggest_commands=self.suggest_commands)
        return get_command_from_info(CommandInfo(name=name, callback=obj),
                                     pretty_exceptions_short=self.pretty_exceptions_short,
                                     rich_markup_mode=self.rich_markup_mode)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # TyperGroup's walks the values: it would import every command


def lazy_group(specs: dict[str, str]) -> type[LazyGroup]:
    """The group class for ``typer.Typer(cls=...)`` with these commands, in this order."""
    return type("LazyGroup", (LazyGroup,), {"specs": dict(specs)})
