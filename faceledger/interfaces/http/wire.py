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
import stat
from pathlib import Path
from typing import Any

from botocore.model import Shape

from faceledger.service import api_model, surface
from faceledger.errors import FaceledgerError, ImageBytesTooLargeError, InvalidParameterError, InvalidS3ObjectError, SerializationError, UnknownOperationError
from faceledger.governance.gate import Gate
from faceledger.governance.policy import Context
from faceledger.service.operations import FaceService

TARGET_PREFIX = "RekognitionService."
#: Members accepted and not acted on: boto3 fills ClientRequestToken by itself (idempotency
#: tokens); the operations that take it (video jobs) receive it. CreateCollection's Tags reach the service (the tag faceledger:model chooses the model).
IGNORED_MEMBERS = {"ClientRequestToken"}
#: Deepest JSON nesting accepted: Rekognition's input shapes nest 4 levels; past Python's
#: recursion limit json.loads raises RecursionError, which must be a client error, not a 500.
MAX_JSON_DEPTH = 32


def parse_json(body: bytes, *, what: str = "the request body") -> Any:
    """JSON of bounded nesting, or SerializationError (never RecursionError or a decode error)."""
    depth = 0
    in_string = escaped = False
    brackets = body.count(b"[") + body.count(b"{")  # at C speed; base64 images have none
    for byte in body if brackets > MAX_JSON_DEPTH else b"":  # brackets outside strings; cheap next to the parse itself
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise SerializationError(f"{what} nests JSON more than {MAX_JSON_DEPTH} levels deep")
        elif byte in (0x5D, 0x7D):
            depth -= 1
    try:
        return json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SerializationError(f"{what} is not valid JSON") from None


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def supported_operations(service: FaceService) -> list[str]:
    """The model's operations that the service implements, by name."""
    return sorted(op for op in api_model.service_model().operation_names if hasattr(service, snake(op)))


class Dispatcher:
    def __init__(self, gate: Gate, *, s3_root: Path | None = None, max_image_bytes: int = 5 * 1024 * 1024) -> None:
        self.gate = gate
        self.max_image_bytes = max_image_bytes
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
        request = parse_json(body)
        if not isinstance(request, dict):
            raise SerializationError("the request body must be a JSON object")
        return self.dispatch(operation, request, ctx)

    def dispatch(self, operation: str, request: dict, ctx: Context, *, extended: bool = False) -> dict:
        """A request of Rekognition members (images as on the wire: Bytes in base64 or S3Object),
        validated by the operation's input shape, run through the gate, shaped by its output.
        ``extended``: faceledger's own members are accepted too (the native API; the wire takes
        the model's members only)."""
        shape = surface.input_shape(operation) if extended else api_model.operation(operation).input_shape
        api_model.check_value(operation, shape, request)
        method = getattr(self.service, snake(operation))
        accepted = set(inspect.signature(method).parameters)
        kwargs: dict[str, Any] = {}
        images: list[bytes] = []
        for member, value in request.items():
            if member in IGNORED_MEMBERS and snake(member) not in accepted:  # a video job's token is kept (idempotency)
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
        if not isinstance(obj.get("Bucket"), str) or not isinstance(obj.get("Name"), str):
            raise InvalidS3ObjectError("Image.S3Object needs a Bucket and a Name")
        return self._s3_object(obj["Bucket"], obj["Name"])

    def _s3_object(self, bucket: str, name: str) -> bytes:
        """The file <s3_root>/<bucket>/<name>: inside the root, a regular file, size-checked before
        it is read (and read no further than the limit). Every way a name can fail is a 4xx."""
        shown = f"object {name[:80]!r} in bucket {bucket[:80]!r}"
        if "\x00" in bucket or "\x00" in name:
            raise InvalidS3ObjectError("bucket and object names cannot contain a NUL character")
        if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in (bucket, *name.split("/"))):
            raise InvalidS3ObjectError(f"{shown}: a path component is over 255 bytes")
        try:
            root = self.s3_root.resolve()
            path = (root / bucket / name).resolve(strict=True)
        except FileNotFoundError:
            raise InvalidS3ObjectError(f"no {shown}") from None
        except RuntimeError:  # a symlink loop (Python < 3.13)
            raise InvalidS3ObjectError(f"{shown}: the name resolves through a symlink loop") from None
        except (OSError, ValueError) as exc:  # ELOOP, ENAMETOOLONG, ENOTDIR, EACCES, ...
            raise InvalidS3ObjectError(f"{shown}: cannot be resolved ({getattr(exc, 'strerror', None) or exc})") from None
        if root not in path.parents:
            raise InvalidS3ObjectError("the object name leaves its bucket")
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                raise InvalidS3ObjectError(f"no {shown} (not a regular file)")
            if info.st_size > self.max_image_bytes:
                raise ImageBytesTooLargeError(
                    f"{shown}: {info.st_size:,} bytes is over the {self.max_image_bytes:,}-byte image limit")
            with path.open("rb") as fh:
                data = fh.read(self.max_image_bytes + 1)
        except OSError as exc:
            raise InvalidS3ObjectError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
        if len(data) > self.max_image_bytes:
            raise ImageBytesTooLargeError(f"{shown}: over the {self.max_image_bytes:,}-byte image limit")
        return data


def error_body(exc: FaceledgerError) -> dict:
    return {"__type": exc.code, "message": exc.message}
