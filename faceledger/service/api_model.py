"""The Rekognition service model (botocore's JSON), the one source of truth for parameters.

Parameter names, ranges, patterns and enums are read from botocore's ``rekognition`` service
model rather than retyped: the service layer checks its arguments here, and the wire layer will
use the same shapes to parse and serialise.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # botocore costs ~0.2 s to import: loaded on the first check, not by every command
    from botocore.model import OperationModel, ServiceModel, Shape

from faceledger.errors import ImageBytesTooLargeError, InvalidParameterError


@lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    import botocore.session

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
        if member.type_name == "structure" and value == {}:
            continue  # a placeholder for a structure checked where it is parsed (an Image)
        check_value(f"{operation_name}.{name}", member, value)


def validate(operation_name: str, request: dict) -> None:
    """Validate a whole request body (Rekognition member names, nested structures included)."""
    check_value(operation_name, operation(operation_name).input_shape, request)


def check_value(where: str, shape: Shape, value: Any) -> None:
    """``value`` against ``shape``: everything the model states (the one check every interface uses)."""
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise InvalidParameterError(f"{where} must be an object")
        for name in shape.required_members:
            if value.get(name) is None:
                raise InvalidParameterError(f"{where}: {name} is required")
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None:
                raise InvalidParameterError(f"{where} has no member {name} (its members: "
                                            f"{', '.join(shape.members) or 'none'})")
            if item is not None:
                check_value(f"{where}.{name}", member, item)
        return
    if kind == "blob":  # in this API, image bytes: over the limit is the cloud API's ImageTooLargeException
        if not isinstance(value, (str, bytes)):
            raise InvalidParameterError(f"{where} must be base64-encoded bytes")
        size = len(value) * 3 // 4 if isinstance(value, str) else len(value)
        if meta.get("max") is not None and size > meta["max"]:
            raise ImageBytesTooLargeError(f"{where}: {size:,} bytes is over the {meta['max']:,}-byte limit")
        _range(where, size, meta, "bytes")
        return
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
            check_value(f"{where}[{i}]", shape.member, item)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidParameterError(f"{where} must be true or false")


def _range(where: str, value: float, meta: dict, unit: str) -> None:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None and not low <= value <= high:
        raise InvalidParameterError(f"{where} must be between {low} and {high}{' ' + unit if unit else ''} (got {value})")
    if low is not None and value < low:
        raise InvalidParameterError(f"{where} must be at least {low}{' ' + unit if unit else ''} (got {value})")
    if high is not None and value > high:
        raise InvalidParameterError(f"{where} must be at most {high}{' ' + unit if unit else ''} (got {value})")


@lru_cache(maxsize=None)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


#: faceledger's own response members, added to the model's shapes: what accountability needs and
#: the cloud API lacks. boto3 parses only modelled members, so it drops these silently; the native
#: API and raw JSON clients see them. docs/http.md documents each.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "CompareFacesMatch": ("FalseMatchRate",),
    "FaceMatch": ("FalseMatchRate", "ExpectedFalseCandidates"),
    "UserMatch": ("FalseMatchRate", "ExpectedFalseCandidates"),
    "SearchFacesResponse": ("Identification", "LedgerEntry"),
    "SearchFacesByImageResponse": ("Identification", "LedgerEntry"),
    "SearchUsersResponse": ("Identification", "LedgerEntry"),
    "SearchUsersByImageResponse": ("Identification", "LedgerEntry"),
    "GetFaceSearchResponse": ("Identification", "ResultsLedgerEntry"),  # the candidates' entry, for review
}


#: Members whose model pattern is [0-9\.]+ but which faceledger fills with a model id
#: (name@weights digest): on the wire they carry wire_model_version(id), and the id itself goes in
#: faceledger's own member named here.
MODEL_VERSION_MEMBERS = {"FaceModelVersion": "FaceledgerModel", "IndexFacesModelVersion": "FaceledgerModel",
                         "FaceModelVersions": "FaceledgerModels"}


#: The cloud API returns OrientationCorrection as null: boxes are in the EXIF-corrected image's
#: coordinates, as faceledger's are. The correction faceledger applied (ROTATE_90, ...) moves to
#: its own member so that a client reading the modelled one sees what the service sends.
ORIENTATION_MEMBERS = {"OrientationCorrection": "FaceledgerOrientation",
                       "SourceImageOrientationCorrection": "FaceledgerSourceOrientation",
                       "TargetImageOrientationCorrection": "FaceledgerTargetOrientation"}


def wire_model_version(model: str) -> str:
    """A model id as the number the cloud API's pattern allows: ``1.<decimal of the weights
    digest's first 8 hex digits>``, stable for the same weights and different for others; a
    version already numeric passes through."""
    if _compiled(r"[0-9\.]+").fullmatch(model):
        return model
    _, _, digest = model.partition("@")
    try:
        return f"1.{int(digest[:8], 16)}"
    except ValueError:
        return "1.0"


def plain(value: Any) -> Any:
    """A dataclass tree as JSON with CamelCase members (for extension members), Nones left out."""
    if dataclasses.is_dataclass(value):
        return {_camel(f.name): plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def output(operation_name: str, result: Any) -> dict:
    """A service result as the operation's output shape: the JSON the cloud API would send."""
    shape = operation(operation_name).output_shape
    return {} if shape is None or result is None else to_shape(result, shape)


def to_shape(value: Any, shape: Shape) -> Any:
    """Shape a dataclass (fields named as the members in snake_case), list or scalar by ``shape``.

    Members the value does not have, or holds as None, are omitted, as the cloud API omits them.
    """
    kind = shape.type_name
    if kind == "structure":
        if dataclasses.is_dataclass(value):
            fields = {_norm(f.name): getattr(value, f.name) for f in dataclasses.fields(value)}
        else:
            fields = {_norm(k): v for k, v in dict(value).items()}
        out = {}
        for member, member_shape in shape.members.items():
            v = fields.get(_norm(member))
            if v is not None and member in ORIENTATION_MEMBERS:
                out[ORIENTATION_MEMBERS[member]] = str(v)
            elif v is not None:
                out[member] = to_shape(v, member_shape)
                if member in MODEL_VERSION_MEMBERS:
                    out[MODEL_VERSION_MEMBERS[member]] = v if isinstance(v, str) else list(v)
                    out[member] = (wire_model_version(v) if isinstance(v, str)
                                   else [wire_model_version(x) for x in v])
        for member in EXTENSIONS.get(shape.name, ()):
            v = fields.get(_norm(member))
            if v is not None:
                out[member] = plain(v)
        return out
    if kind == "list":
        return [to_shape(v, shape.member) for v in value]
    if kind == "map":
        return {str(k): to_shape(v, shape.value) for k, v in dict(value).items()}
    if kind in ("float", "double", "timestamp"):
        return float(value)
    if kind in ("integer", "long"):
        return int(value)
    if kind == "boolean":
        return bool(value)
    return str(value)


def _norm(name: str) -> str:
    return name.replace("_", "").lower()
