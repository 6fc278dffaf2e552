"""Command-line options derived from botocore's model (service/surface.py), not retyped.

Where a command exposes a Rekognition operation's parameter, :func:`member_option` makes the option
from the operation's input shape: its name (the member in kebab-case, ``--quality-filter``; older
names stay as aliases), its help (the model's documentation, first sentence, as plain text, with
the allowed values), its type, and its check (range, pattern, enum: the same
:func:`api_model.check_value` the HTTP interfaces use). A value the model refuses exits with code 3
(bad input) and says what is allowed, before any model is loaded. CLI conveniences (file paths
rather than bytes, --json, --purpose) are not members and stay as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from faceledger.errors import FaceledgerError, InvalidParameterError
from faceledger.interfaces.cli.common import EXIT_INPUT
from faceledger.settings import Settings


class ModelValueError(typer.BadParameter):
    """A value botocore's model refuses: bad input (exit 3), as the service would answer."""

    exit_code = EXIT_INPUT


def option_name(member: str) -> str:
    """``SimilarityThreshold`` -> ``--similarity-threshold``."""
    return "--" + "".join("-" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(member))


def _shape(operation: str, member: str):
    from faceledger.service import surface

    return surface.input_shape(operation).members[member]


def _parser(operation: str, member: str, default: Any = None):
    """Text -> the member's value, checked as the model states (exit 3 with what is allowed). The
    model is read when a value is given, not when the command line is defined (nor for the
    option's own default, which click also passes through here)."""

    def parse(text: Any) -> Any:
        if not isinstance(text, str) or (default is not None and text == default):
            return text
        from faceledger.service import api_model, surface

        shape = _shape(operation, member)
        try:
            value = surface.from_text(member, shape, [text])
            api_model.check_value(member, shape, value)
        except InvalidParameterError as exc:
            raise ModelValueError(exc.message) from None
        return value

    return parse


def _described(operation: str, member: str) -> dict:
    """What an option shows (kind, documentation, allowed values, metavar), from botocore's model.

    Every command defines every option when the CLI starts, and botocore's model costs ~0.3-0.6 s
    to import and read, which `faceledger compare` would pay for help texts it never prints. So
    the descriptions are kept in ``<cache_dir>/cli-options-<key>.json``, keyed by botocore's
    version and this module's and surface.py's source: read from botocore once, then from there."""
    cache = _cache()
    key = f"{operation}.{member}"
    if key not in cache["entries"]:
        from faceledger.service import surface

        shape = _shape(operation, member)
        allowed = surface.constraints(shape)
        if getattr(shape, "enum", None):
            metavar = "[" + "|".join(shape.enum) + "]"
        elif shape.type_name in ("integer", "long", "float", "double"):
            metavar = allowed.replace(" to ", "-").upper() if " to " in allowed else shape.type_name.upper()
        else:
            metavar = "TEXT"
        cache["entries"][key] = {"boolean": shape.type_name == "boolean", "metavar": metavar, "allowed": allowed,
                                 "documentation": surface.documentation(shape, first_sentence=True)}
        _save(cache)
    return cache["entries"][key]


@lru_cache(maxsize=1)
def _cache() -> dict:
    try:
        folder = Settings.load().cache_dir
    except FaceledgerError:  # a bad setting is reported by the command itself, not here
        folder = None
    here = Path(__file__).resolve()
    digest = hashlib.sha256(here.read_bytes() + (here.parents[2] / "service" / "surface.py").read_bytes())
    try:
        version = metadata.version("botocore")
    except metadata.PackageNotFoundError:
        version = "unknown"
    path = folder / f"cli-options-{version}-{digest.hexdigest()[:12]}.json" if folder else None
    try:
        entries = json.loads(path.read_text()) if path and path.is_file() else {}
    except (OSError, ValueError):
        entries = {}
    return {"path": path, "entries": entries if isinstance(entries, dict) else {}}


def _save(cache: dict) -> None:
    path = cache["path"]
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cli-options-")
        with os.fdopen(fd, "w") as fh:
            json.dump(cache["entries"], fh)
        os.replace(tmp, path)
    except OSError:  # a read-only cache: read from botocore each time, as before
        pass


def _help(d: dict, note: str) -> str:
    allowed = d["allowed"]
    return escape(" ".join(x for x in (d["documentation"], f"{allowed[0].upper()}{allowed[1:]}." if allowed else "", note)
                           if x))


def member_option(operation: str, member: str, *aliases: str, default: Any = None, note: str = "",
                  hidden: bool = False) -> Any:
    """A typer option for ``operation``'s input member ``member`` (faceledger's own members
    included). ``aliases``: earlier names kept working; ``note``: what faceledger adds (its default)."""
    d = _described(operation, member)
    names = tuple(dict.fromkeys((option_name(member), *aliases)))
    if d["boolean"]:
        return typer.Option(default, *names, help=_help(d, note), hidden=hidden)
    return typer.Option(default, *names, help=_help(d, note), metavar=d["metavar"],
                        parser=_parser(operation, member, default), hidden=hidden)


def member_argument(operation: str, member: str, *, note: str = "") -> Any:
    """A required positional argument for a scalar member (CollectionId, UserId, ...), from the model."""
    return typer.Argument(..., help=_help(_described(operation, member), note), parser=_parser(operation, member))
