"""The Rekognition service model (botocore's JSON), the one source of truth for parameters.

Parameter names, ranges, patterns and enums are read from botocore's ``rekognition`` service
model rather than retyped: the service layer checks its arguments here, and the wire layer will
use the same shapes to parse and serialise.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from .errors import InvalidParameterError


@lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("rekognition")


def operation(name: str) -> OperationModel:
    return service_model().operation_model(name)


def enum(shape_name: str) -> list[str]:
    return list(service_model().shape_for(shape_name).enum)


def check(operation_name: str, **params: Any) -> None:
    """Validate the given parameters (Rekognition member names) against the operation's input.

    ``None`` means "not given": required members must not be None. Everything the model states is
    checked: type, min/max (length for strings and lists, value for numbers), pattern, enum.
    """
    shape = operation(operation_name).input_shape
    for name in shape.required_members:
        if params.get(name) is None:
            raise InvalidParameterError(f"{operation_name}: {name} is required")
    for name, value in params.items():
        if value is None:
            continue
        member = shape.members.get(name)
        if member is None:
            raise InvalidParameterError(f"{operation_name} has no parameter {name}")
        _check_value(f"{operation_name}.{name}", member, value)


def _check_value(where: str, shape: Shape, value: Any) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidParameterError(f"{where} must be a string")
        _range(where, len(value), meta, "characters long")
        pattern = meta.get("pattern")
        if pattern and not _compiled(pattern).fullmatch(value):
            raise InvalidParameterError(f"{where} {value!r} does not match the pattern {pattern}")
        if shape.enum and value not in shape.enum:
            raise InvalidParameterError(f"{where} must be one of {', '.join(shape.enum)}, not {value!r}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterError(f"{where} must be an integer")
        _range(where, value, meta, "")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise InvalidParameterError(f"{where} must be a number")
        _range(where, value, meta, "")
    elif kind == "list":
        if not isinstance(value, (list, tuple)):
            raise InvalidParameterError(f"{where} must be a list")
        _range(where, len(value), meta, "items")
        for i, item in enumerate(value):
            _check_value(f"{where}[{i}]", shape.member, item)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidParameterError(f"{where} must be true or false")


def _range(where: str, value: float, meta: dict, unit: str) -> None:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and value < low:
        raise InvalidParameterError(f"{where} must be at least {low}{' ' + unit if unit else ''} (got {value})")
    if high is not None and value > high:
        raise InvalidParameterError(f"{where} must be at most {high}{' ' + unit if unit else ''} (got {value})")


@lru_cache(maxsize=None)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)
