"""The Rekognition JSON 1.1 protocol, driven by botocore's service model: not one line per operation.

A request names its operation in ``X-Amz-Target``; its JSON body is validated against the
operation's input shape (everything the model states: required members, types, ranges,
patterns, enums, nested structures), images are resolved to bytes, members become the snake_case
keyword arguments of the FaceService method of the same name, and the result is shaped by the
output shape.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import re
from pathlib import Path
from typing import Any

from botocore.model import Shape

from faceledger.service import api_model
from faceledger.errors import FaceledgerError, InvalidParameterError, InvalidS3ObjectError, SerializationError, UnknownOperationError
from faceledger.governance.gate import Gate
from faceledger.governance.policy import Context
from faceledger.service.operations import FaceService

TARGET_PREFIX = "RekognitionService."
#: Members accepted and not acted on: boto3 fills ClientRequestToken by itself (idempotency
#: tokens). CreateCollection's Tags reach the service (the tag faceledger:model chooses the model).
IGNORED_MEMBERS = {"ClientRequestToken"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def supported_operations(service: FaceService) -> list[str]:
    """The model's operations that the service implements, by name."""
    return sorted(op for op in api_model.service_model().operation_names if hasattr(service, snake(op)))


class Dispatcher:
    def __init__(self, gate: Gate, *, s3_root: Path | None = None) -> None:
        self.gate = gate
        service = self.service = gate.service
        self.s3_root = Path(s3_root) if s3_root else None
        self.operations = set(supported_operations(service))

    def operation_of(self, target: str | None) -> str:
        if not target or not target.startswith(TARGET_PREFIX):
            raise UnknownOperationError(f"X-Amz-Target must be {TARGET_PREFIX}<Operation>")
        op = target[len(TARGET_PREFIX):]
        if op not in self.operations:
            raise UnknownOperationError(f"{op} is not an operation faceledger implements")
        return op

    def call(self, operation: str, body: bytes, ctx: Context) -> dict:
        try:
            request = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise SerializationError("the request body is not valid JSON") from None
        if not isinstance(request, dict):
            raise SerializationError("the request body must be a JSON object")
        shape = api_model.operation(operation).input_shape
        api_model.validate(operation, request)
        method = getattr(self.service, snake(operation))
        accepted = set(inspect.signature(method).parameters)
        kwargs: dict[str, Any] = {}
        images: list[bytes] = []
        for member, value in request.items():
            if member in IGNORED_MEMBERS:
                continue
            name = snake(member)
            if name not in accepted or member not in shape.members:
                raise InvalidParameterError(f"{operation}: {member} is not supported by faceledger")
            kwargs[name] = self._convert(value, shape.members[member])
            if shape.members[member].name == "Image":
                images.append(kwargs[name])
        parameters = {m: v for m, v in request.items() if m not in IGNORED_MEMBERS and shape.members[m].name != "Image"}
        result = self.gate.call(ctx, operation, lambda **extra: method(**kwargs, **extra),
                                collection=request.get("CollectionId"), images=images, record={"parameters": parameters})
        return api_model.output(operation, result)

    def _convert(self, value: Any, shape: Shape) -> Any:
        if shape.name == "Image":
            return self.image_bytes(value)
        return value

    def image_bytes(self, image: dict) -> bytes:
        """Image.Bytes (base64 on the wire) or Image.S3Object mapped under the configured root."""
        if ("Bytes" in image) == ("S3Object" in image):
            raise InvalidParameterError("Image needs exactly one of Bytes and S3Object")
        if "Bytes" in image:
            try:
                return base64.b64decode(image["Bytes"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise InvalidParameterError("Image.Bytes is not valid base64") from None
        obj = image["S3Object"]
        if self.s3_root is None:
            raise InvalidS3ObjectError(
                "Image.S3Object needs an object root on this server (FACELEDGER_S3_ROOT: bucket/key map to "
                "files under it); or send Image.Bytes"
            )
        if "Version" in obj:
            raise InvalidS3ObjectError("S3 object versions are not supported: leave Version out")
        root = self.s3_root.resolve()
        path = (root / obj["Bucket"] / obj["Name"]).resolve()
        if root not in path.parents:
            raise InvalidS3ObjectError("the object name leaves its bucket")
        if not path.is_file():
            raise InvalidS3ObjectError(f"no object {obj['Name']!r} in bucket {obj['Bucket']!r}")
        return path.read_bytes()


def error_body(exc: FaceledgerError) -> dict:
    return {"__type": exc.code, "message": exc.message}
