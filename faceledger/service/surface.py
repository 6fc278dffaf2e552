"""The Rekognition surface as every interface derives it, defined once: botocore's model plus
faceledger's few input members of its own.

An operation's input members, their types, ranges, patterns, enums, required-ness and
documentation come from botocore's ``rekognition`` model (:mod:`api_model`). The interfaces do not
retype them: the native REST API (interfaces/http/rest.py) builds its parameters, its validation
and its OpenAPI schema from :func:`input_shape`, and the CLI its options (interfaces/cli/options.py).
What an interface receives as text (a query string, a form field, a command-line option) becomes a
typed value here (:func:`from_text`), checked by the same code as the wire's JSON
(:func:`api_model.check_value`).

faceledger's own input members (:data:`INPUT_EXTENSIONS`) are declared once below, as botocore
shapes, so they are documented, parsed and checked like the model's. The Rekognition wire (JSON 1.1)
does not accept them: boto3 would not send them.
"""

from __future__ import annotations

import copy
import html
import math
import re
from functools import lru_cache
from typing import Any

import botocore.session
from botocore.model import Shape, ShapeResolver, StructureShape

from faceledger.errors import InvalidParameterError
from faceledger.service import api_model

_FALSE_MATCH_RATE = {
    "type": "double", "min": 0, "max": 1,
    "documentation": "<p>faceledger: the threshold as a false match rate target in (0, 1], such as 1e-4. The threshold "
                     "becomes the similarity at which strangers score that high at that rate (with a similarity "
                     "threshold too, the stricter wins). Needs a calibrated model.</p>",
}

#: faceledger's input members beyond the model: operation -> member -> a botocore shape definition.
INPUT_EXTENSIONS: dict[str, dict[str, dict]] = {
    **{op: {"MaxFalseMatchRate": _FALSE_MATCH_RATE}
       for op in ("SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage")},
    "CreateCollection": {
        "StoreImages": {"type": "boolean", "documentation": "<p>faceledger: also keep each indexed image's bytes "
                                                            "(off by default: templates and face metadata only).</p>"},
        "Model": {"type": "string", "min": 1, "max": 255,
                  "documentation": "<p>faceledger: the collection's embedding model, for its life (<code>faceledger "
                                   "models list</code>); default: the server's. On the wire: the tag "
                                   "<code>faceledger:model</code>.</p>"},
    },
}


@lru_cache(maxsize=1)
def _resolver() -> ShapeResolver:
    """The model's shapes, each operation's input extended with faceledger's members."""
    shapes = copy.deepcopy(botocore.session.get_session().get_service_data("rekognition")["shapes"])
    service = api_model.service_model()
    for operation, members in INPUT_EXTENSIONS.items():
        name = service.operation_model(operation).input_shape.name
        for member, definition in members.items():
            shapes[f"Faceledger{operation}{member}"] = definition
            shapes[name]["members"][member] = {"shape": f"Faceledger{operation}{member}"}
    return ShapeResolver(shapes)


@lru_cache(maxsize=None)
def input_shape(operation: str) -> StructureShape:
    """The operation's input: the model's members and faceledger's own (:data:`INPUT_EXTENSIONS`)."""
    return _resolver().get_shape_by_name(api_model.operation(operation).input_shape.name)


def documentation(shape: Shape, *, first_sentence: bool = False) -> str:
    """A member's documentation as plain text (the model's is HTML)."""
    text = getattr(shape, "documentation", "") or ""
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text))).strip()
    text = re.sub(r" ([.,;:)])", r"\1", text)
    if first_sentence:
        match = re.match(r"(.+?(?<!e\.g)(?<!i\.e)[.!?])(\s|$)", text)
        text = match.group(1) if match else text
    return text


def constraints(shape: Shape) -> str:
    """What the model allows, in words: ``0 to 100``, ``one of NONE, AUTO, ...``, ``1-255 characters``."""
    meta, kind = shape.metadata, shape.type_name
    low, high = meta.get("min"), meta.get("max")
    if kind == "string" and shape.enum:
        return "one of " + ", ".join(shape.enum)
    if kind in ("integer", "long", "float", "double"):
        if low is not None and high is not None:
            return f"{low:g} to {high:g}"
        return f"at least {low:g}" if low is not None else (f"at most {high:g}" if high is not None else "")
    if kind == "list" and shape.member.type_name == "string" and shape.member.enum:
        return "each one of " + ", ".join(shape.member.enum)
    return ""


_INTEGER = re.compile(r"-?[0-9]{1,20}")
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")


def from_text(where: str, shape: Shape, values: list[str]) -> Any:
    """A member's value from text (query parameters, form fields, command-line options), typed
    by its shape; a list member takes every value given, any other exactly one. Not checked
    against the shape's ranges here: :func:`api_model.check_value` does that for every interface."""
    if shape.type_name == "list":
        return [from_text(f"{where}[{i}]", shape.member, [v]) for i, v in enumerate(values)]
    if len(values) != 1:
        raise InvalidParameterError(f"{where} is given {len(values)} times; give it once")
    text, kind = values[0], shape.type_name
    if kind == "string":
        return text
    if kind in ("integer", "long"):
        if not _INTEGER.fullmatch(text):
            raise InvalidParameterError(f"{where} must be an integer, not {text[:40]!r}")
        return int(text)
    if kind in ("float", "double"):
        if not _NUMBER.fullmatch(text) or not math.isfinite(float(text)):
            raise InvalidParameterError(f"{where} must be a number, not {text[:40]!r}")
        return float(text)
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise InvalidParameterError(f"{where} must be true or false, not {text[:40]!r}")
        return text.lower() == "true"
    raise InvalidParameterError(f"{where} ({kind}) cannot be given as text: send it in a JSON body")


def json_schema(shape: Shape, *, depth: int = 0) -> dict:
    """The shape as JSON Schema (OpenAPI 3.1): types, ranges, anchored patterns, enums, required
    members, and the documentation as each property's description."""
    if depth > 8:
        return {}
    meta, kind = shape.metadata, shape.type_name
    schema: dict[str, Any]
    if kind == "structure":
        schema = {"type": "object", "additionalProperties": False, "properties": {
            name: {**json_schema(member, depth=depth + 1), **_described(member)} for name, member in shape.members.items()
        }}
        if shape.required_members:
            schema["required"] = list(shape.required_members)
        return schema
    if kind == "list":
        schema = {"type": "array", "items": json_schema(shape.member, depth=depth + 1)}
        _bounds(schema, meta, "minItems", "maxItems")
    elif kind == "map":
        schema = {"type": "object", "additionalProperties": json_schema(shape.value, depth=depth + 1)}
        _bounds(schema, meta, "minProperties", "maxProperties")
    elif kind == "string":
        schema = {"type": "string"}
        if shape.enum:
            schema["enum"] = list(shape.enum)
        _bounds(schema, meta, "minLength", "maxLength")
        if meta.get("pattern"):
            schema["pattern"] = "^(?:" + meta["pattern"].strip("^$") + ")$"
    elif kind in ("integer", "long"):
        schema = {"type": "integer"}
        _bounds(schema, meta, "minimum", "maximum")
    elif kind in ("float", "double"):
        schema = {"type": "number"}
        _bounds(schema, meta, "minimum", "maximum")
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "blob":
        schema = {"type": "string", "contentEncoding": "base64"}
    else:
        schema = {"type": "string"}
    return schema


def _described(shape: Shape) -> dict:
    text = documentation(shape)
    return {"description": text} if text else {}


def _bounds(schema: dict, meta: dict, low: str, high: str) -> None:
    if meta.get("min") is not None:
        schema[low] = meta["min"]
    if meta.get("max") is not None:
        schema[high] = meta["max"]
