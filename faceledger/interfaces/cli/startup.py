"""What a one-off command pays before and after its work: only its own modules, and no garbage
collection of what every run imports and keeps until it exits (issue 25: `faceledger compare`).

Commands are imported when they run. ``faceledger`` has some 20 top-level commands in a dozen
modules; importing them all for one `compare` cost tens of milliseconds. :func:`lazy_group` gives
the root a click group whose ``commands`` mapping knows every command by name and imports the
module behind one only when it is looked up (click's "lazily loading subcommands" pattern, on
typer's group). ``--help`` and an unknown name's suggestions list every name; ``--help`` imports
every module, as before.

The collector. A run imports some 400 modules; Python's cyclic collector scanned their objects
again and again while they loaded (~50 ms), and its passes at exit scanned them all once more
(~100 ms), though they live until the process ends. ``main`` pauses it while the command is
imported and found (:func:`pause`), freezes what exists when the command starts and turns it back
on (:func:`resume`: a long command collects its own garbage as before, without rescanning the
imports), and at exit collects what the command left in cycles (closing its databases as usual)
before freezing the rest (:func:`finish`). Python does not promise to finalise objects still
alive at exit; everything the command made is collected as before.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any, Callable

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

_state = {"paused": False, "resumed": False}


def pause() -> None:
    """Stop the cyclic collector while a command's modules load (``main`` only: a test or a
    program that runs the app in its own process keeps its collector as it is)."""
    gc.disable()
    _state["paused"] = True


def resume() -> None:
    """The command starts: what was imported is kept for good (frozen, never scanned again) and
    the collector runs again for what the command makes. Nothing when :func:`pause` was not called."""
    if _state["paused"]:
        _state["paused"] = False
        _state["resumed"] = True
        gc.freeze()
        gc.enable()


def finish() -> None:
    """The command is done: collect its own cycles (their finalisers run: a database connection
    left in one is closed as before), then freeze everything so the interpreter's passes at exit
    have nothing to scan. Nothing when :func:`pause` was not called."""
    if _state["paused"] or _state["resumed"]:
        if _state["resumed"]:
            gc.collect()  # only what the command made: the imports are frozen
        gc.freeze()


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
