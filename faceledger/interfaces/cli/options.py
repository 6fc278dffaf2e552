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

from typing import Any

import typer
from rich.markup import escape

from faceledger.errors import InvalidParameterError
from faceledger.interfaces.cli.common import EXIT_INPUT
from faceledger.service import api_model, surface


class ModelValueError(typer.BadParameter):
    """A value botocore's model refuses: bad input (exit 3), as the service would answer."""

    exit_code = EXIT_INPUT


def option_name(member: str) -> str:
    """``SimilarityThreshold`` -> ``--similarity-threshold``."""
    return "--" + "".join("-" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(member))


def _parser(member: str, shape):
    """Text -> the member's value, checked as the model states (exit 3 with what is allowed)."""

    def parse(text: Any) -> Any:
        if not isinstance(text, str):  # the default, or a value typer already parsed
            return text
        try:
            value = surface.from_text(member, shape, [text])
            api_model.check_value(member, shape, value)
        except InvalidParameterError as exc:
            raise ModelValueError(exc.message) from None
        return value

    return parse


def _help(shape, note: str) -> str:
    allowed = surface.constraints(shape)
    return escape(" ".join(x for x in (surface.documentation(shape, first_sentence=True),
                                       f"{allowed[0].upper()}{allowed[1:]}." if allowed else "", note) if x))


def _metavar(shape) -> str:
    allowed = surface.constraints(shape)
    if getattr(shape, "enum", None):
        return "[" + "|".join(shape.enum) + "]"
    if shape.type_name in ("integer", "long", "float", "double"):
        return allowed.replace(" to ", "-").upper() if " to " in allowed else shape.type_name.upper()
    return "TEXT"


def member_option(operation: str, member: str, *aliases: str, default: Any = None, note: str = "",
                  hidden: bool = False) -> Any:
    """A typer option for ``operation``'s input member ``member`` (faceledger's own members
    included). ``aliases``: earlier names kept working; ``note``: what faceledger adds (its default)."""
    shape = surface.input_shape(operation).members[member]
    names = tuple(dict.fromkeys((option_name(member), *aliases)))
    if shape.type_name == "boolean":
        return typer.Option(default, *names, help=_help(shape, note), hidden=hidden)
    return typer.Option(default, *names, help=_help(shape, note), metavar=_metavar(shape),
                        parser=_parser(member, shape), hidden=hidden)


def member_argument(operation: str, member: str, *, note: str = "") -> Any:
    """A required positional argument for a scalar member (CollectionId, UserId, ...), from the model."""
    shape = surface.input_shape(operation).members[member]
    return typer.Argument(..., help=_help(shape, note), parser=_parser(member, shape))
