"""Typed errors: one class per condition a client can act on.

Every error carries ``code``, the Amazon Rekognition error code it maps to on the wire, so the
interfaces translate errors without a table of their own. Subclasses refine the message and let
Python callers catch exactly the condition they care about.
"""

from __future__ import annotations


class FaceledgerError(Exception):
    """Base of every error faceledger raises on purpose."""

    code = "InternalServerError"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- client errors, by Rekognition error code ---------------------------------------------------


class InvalidParameterError(FaceledgerError):
    """A parameter is out of range or inconsistent with the others."""

    code = "InvalidParameterException"
    http_status = 400


class ProbeQualityError(InvalidParameterError):
    """An identification probe is below the policy's quality floor: refused, not searched."""


class InvalidImageFormatError(FaceledgerError):
    """The bytes are not an image faceledger can decode."""

    code = "InvalidImageFormatException"
    http_status = 400


class ImageIsAFolderError(FaceledgerError):
    """A folder was given where an image file is expected."""

    code = "InvalidParameterException"
    http_status = 400


class ImageTooLargeError(FaceledgerError):
    """The image is over a size limit (bytes or pixels)."""

    code = "ImageTooLargeException"
    http_status = 400


class ResourceNotFoundError(FaceledgerError):
    code = "ResourceNotFoundException"
    http_status = 400


class ResourceAlreadyExistsError(FaceledgerError):
    code = "ResourceAlreadyExistsException"
    http_status = 400


# --- imaging -------------------------------------------------------------------------------------


class EmptyImageError(InvalidImageFormatError):
    """Zero bytes were given where an image was expected."""


class NotAnImageError(InvalidImageFormatError):
    """The bytes do not start like any image format we know."""


class UnsupportedImageFormatError(InvalidImageFormatError):
    """A recognised image format that faceledger does not accept (e.g. ICO, PSD)."""


class CorruptImageError(InvalidImageFormatError):
    """The header parsed but the pixel data is truncated or damaged."""


class ImageBytesTooLargeError(ImageTooLargeError):
    """The encoded image is over the byte limit."""


class TooManyPixelsError(ImageTooLargeError):
    """The header declares more pixels than allowed: refused before decoding (decompression bomb)."""


# --- faces and models ---------------------------------------------------------------------------


class NoFaceError(InvalidParameterError):
    """An operation needed a face and the image has none the detector could find."""


class ModelMismatchError(InvalidParameterError):
    """Two templates come from different embedding models and cannot be compared."""


class ModelFileError(FaceledgerError):
    """A model file is missing or unreadable: the installation is incomplete (not an internal
    error: the message says what to install or fetch)."""

    code = "ModelUnavailableException"
    http_status = 503


class DatasetError(FaceledgerError):
    """A dataset is missing, incomplete or fails its checksum."""

    code = "DatasetUnavailableException"
    http_status = 503


class DownloadFailedError(DatasetError):
    """A download (a dataset, a model package) failed or did not match its published checksum."""

    code = "DownloadFailedException"


class EndpointError(FaceledgerError):
    """An audited endpoint refused a call, or kept failing it after every retry: the audit stops
    (what it already received stays in its journal, so running it again resumes)."""

    code = "EndpointError"
    http_status = 502


class ToolMissingError(FaceledgerError):
    """A program faceledger runs for a user (headless Chromium, to print a report as PDF) is not
    installed: the message names the package to install."""

    code = "ToolMissingException"
    http_status = 503


class InvalidPaginationTokenError(FaceledgerError):
    """A NextToken that this store did not issue, or one for another listing."""

    code = "InvalidPaginationTokenException"
    http_status = 400


class StoreCorruptionError(FaceledgerError):
    """The store's database fails its integrity check; the message says how to recover."""


class ConflictError(FaceledgerError):
    """The request conflicts with the resource's current state (e.g. a user that exists)."""

    code = "ConflictException"
    http_status = 400


class ServiceQuotaExceededError(FaceledgerError):
    code = "ServiceQuotaExceededException"
    http_status = 400


class ComparisonBudgetError(FaceledgerError):
    """A principal's comparisons for the day without the identification purpose are spent
    (the policy's daily_comparisons_without_identification)."""

    code = "LimitExceededException"
    http_status = 400


# --- the HTTP service ------------------------------------------------------------------------------


class UnknownOperationError(FaceledgerError):
    code = "UnknownOperationException"
    http_status = 400


class SerializationError(FaceledgerError):
    """The request body is not the JSON the protocol expects."""

    code = "SerializationException"
    http_status = 400


class InvalidS3ObjectError(FaceledgerError):
    code = "InvalidS3ObjectException"
    http_status = 400


class RequestTooLargeError(ImageTooLargeError):
    """The request body is over max_request_bytes: refused before it is read in full. Its code is
    the model's ImageTooLargeException (the body is an image, base64-encoded), so SDKs raise their
    typed exception; the HTTP status stays 413 (Payload Too Large)."""

    http_status = 413


class RequestTimeoutError(FaceledgerError):
    """The client did not send its request body within the read timeout (body_read_timeout)."""

    code = "RequestTimeoutException"
    http_status = 408


class BackendUnavailableError(FaceledgerError):
    """A database or vector engine cannot be reached or dropped the connection mid-request. The
    interrupted transaction was rolled back: retry. HTTP 503, which AWS SDKs retry on their own."""

    code = "ServiceUnavailableException"
    http_status = 503


class InternalError(FaceledgerError):
    code = "InternalServerError"
    http_status = 500


class AuthError(FaceledgerError):
    http_status = 403


class MissingAuthenticationTokenError(AuthError):
    code = "MissingAuthenticationTokenException"


class UnrecognizedClientError(AuthError):
    code = "UnrecognizedClientException"


class InvalidSignatureError(AuthError):
    code = "InvalidSignatureException"


class AccessDeniedError(AuthError):
    code = "AccessDeniedException"


class UncalibratedModelError(AccessDeniedError):
    """Identification with a model that has no calibration: its scores carry no false match rate."""


class VideoTooLargeError(FaceledgerError):
    """A stored video over the cloud API's limits (10 GB, 6 hours) or with oversized frames."""

    code = "VideoTooLargeException"
    http_status = 400


class IdempotentParameterMismatchError(FaceledgerError):
    """A ClientRequestToken used again with different parameters."""

    code = "IdempotentParameterMismatchException"
    http_status = 400
