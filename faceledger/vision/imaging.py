"""Bytes -> 8-bit RGB pixels. The only module that touches encoded image data.

Limits are checked in order of cost: byte length first, then the pixel count declared in the
header (before any pixel is decoded, so a decompression bomb costs nothing), then the decode.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceledger.errors import CorruptImageError, EmptyImageError, ImageBytesTooLargeError, ImageIsAFolderError, NotAnImageError, TooManyPixelsError, UnsupportedImageFormatError

#: Formats accepted, as Pillow names them (MPO is the multi-picture JPEG some cameras write).
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})

#: EXIF orientation tag value -> (clockwise rotation applied to correct it, mirrored).
_EXIF_CORRECTIONS = {
    1: (0, False),
    2: (0, True),
    3: (180, False),
    4: (180, True),
    5: (90, True),
    6: (90, False),
    7: (270, True),
    8: (270, False),
}

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, "DecodedImage", np.ndarray, Image.Image]


@dataclass(frozen=True)
class OrientationCorrection:
    """What was done to honour the EXIF orientation tag."""

    exif_orientation: int | None  # the tag's value, None when absent
    rotation: int  # degrees clockwise applied to the stored pixels: 0, 90, 180 or 270
    mirrored: bool

    @property
    def name(self) -> str:
        """The cloud API's OrientationCorrection value (it has no notion of mirroring)."""
        return f"ROTATE_{self.rotation}"


NO_CORRECTION = OrientationCorrection(None, 0, False)


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (height, width, 3) uint8, RGB, upright
    format: str  # Pillow's format name, or "ARRAY" for pixels given directly
    orientation: OrientationCorrection = NO_CORRECTION

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


#: Bytes Pillow keeps per pixel for a decoded frame, by mode (multi-band modes are stored 4 per pixel).
#: 32-bit integer and float frames count their int/float working copies here too.
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 12, "F": 12}
#: Working copies per pixel on the way to (h, w, 3) uint8: a converted frame (4) and the array (3).
_WORK_BYTES = 7
#: An EXIF rotation makes one more 4-byte-per-pixel frame.
_TRANSPOSE_BYTES = 4


class DecodeBudget:
    """Bytes of decoded pixels a process may hold at once: requests wait for their share.

    Decoding is where an image's cost appears (a 77 KB 16-bit PNG declares 40 M pixels), and it
    runs outside the engine's lock, so without a budget N concurrent requests cost N decodes. The
    cost is estimated from the header before any pixel is decoded; one image whose estimate is
    over the whole budget is refused outright (waiting could never help it).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._free = self.capacity
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int, *, origin: str = "image") -> Iterator[None]:
        if nbytes > self.capacity:
            raise TooManyPixelsError(
                f"{origin}: decoding would need about {nbytes / 2**20:,.0f} MiB, over the "
                f"{self.capacity / 2**20:,.0f} MiB decode budget (refused before decoding); downscale the image, "
                "or raise decode_budget_bytes"
            )
        with self._cond:
            self._cond.wait_for(lambda: self._free >= nbytes)
            self._free -= nbytes
        try:
            yield
        finally:
            with self._cond:
                self._free += nbytes
                self._cond.notify_all()

    @property
    def in_use(self) -> int:
        with self._cond:
            return self.capacity - self._free


def decode_cost(data: bytes, *, max_bytes: int = 5 * 1024 * 1024, max_pixels: int = 40_000_000,
                origin: str = "image bytes") -> int:
    """Bytes decoding ``data`` will hold at its peak, from the header alone (no pixel decoded).

    Raises the same typed errors as :func:`decode_image` for what the header already shows
    (not an image, unsupported format, too many pixels)."""
    with _opened(data, max_bytes=max_bytes, max_pixels=max_pixels, origin=origin) as img:
        width, height = img.size
        per_pixel = _MODE_BYTES.get(img.mode, 4) + _WORK_BYTES
        if _orientation(img).exif_orientation not in (None, 1):
            per_pixel += _TRANSPOSE_BYTES
        return width * height * per_pixel


def read_source(source: ImageSource, *, max_bytes: int = 5 * 1024 * 1024) -> ImageSource:
    """A path becomes its bytes (size-checked before it is read); anything else is returned as is."""
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source), max_bytes)
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)
    return source


def load_image(
    source: ImageSource,
    *,
    max_bytes: int = 5 * 1024 * 1024,
    max_pixels: int = 40_000_000,
) -> DecodedImage:
    """Decode an image from bytes, a path, an RGB array or an already decoded image."""
    if isinstance(source, DecodedImage):
        return source
    if isinstance(source, np.ndarray):
        return DecodedImage(_array_to_rgb(source), "ARRAY")
    if isinstance(source, Image.Image):  # already decoded by the caller: taken as it stands
        if source.width * source.height > max_pixels:
            raise _too_many("PIL image", f"{source.width}x{source.height} = {source.width * source.height:,}", max_pixels)
        return DecodedImage(_to_rgb(source), "PIL")
    if isinstance(source, (str, os.PathLike)):
        data = _read_file(Path(source), max_bytes)
        origin = str(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        origin = "image bytes"
    else:
        raise TypeError(f"cannot load an image from {type(source).__name__}")
    return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, origin=origin)


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"no such image file: {path}") from None
    if path.is_dir():
        raise ImageIsAFolderError(f"{path} is a folder, not an image file: pass an image (to index every image "
                                  "in a folder: faceledger index COLLECTION FOLDER)")
    if size > max_bytes:
        raise ImageBytesTooLargeError(
            f"{path}: {size:,} bytes is over the {max_bytes:,}-byte limit; "
            "downscale or recompress it, or raise max_image_bytes"
        )
    with path.open("rb") as fh:  # never more than the limit, even if the file grew after stat
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageBytesTooLargeError(f"{path}: over the {max_bytes:,}-byte limit; downscale or recompress it")
    return data


def decode_image(
    data: bytes,
    *,
    max_bytes: int = 5 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    origin: str = "image bytes",
) -> DecodedImage:
    with _opened(data, max_bytes=max_bytes, max_pixels=max_pixels, origin=origin) as img:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            fmt = img.format
            try:
                img.seek(0)  # first frame of an animation
                img.load()
                correction = _orientation(img)
                upright = ImageOps.exif_transpose(img) if correction.exif_orientation else img
                pixels = _to_rgb(upright)
            except Image.DecompressionBombError:
                raise _too_many(origin, f"more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,}", max_pixels) from None
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise CorruptImageError(
                    f"{origin}: the {fmt} data is truncated or corrupt ({exc}); "
                    "re-export or re-download the image"
                ) from None
    return DecodedImage(pixels, fmt, correction)


@contextmanager
def _opened(data: bytes, *, max_bytes: int, max_pixels: int, origin: str) -> Iterator[Image.Image]:
    """The image opened lazily (header parsed, no pixel decoded) once every header-level limit holds."""
    if not data:
        raise EmptyImageError(f"{origin}: empty (0 bytes); send the image's contents")
    if len(data) > max_bytes:
        raise ImageBytesTooLargeError(
            f"{origin}: {len(data):,} bytes is over the {max_bytes:,}-byte limit; "
            "downscale or recompress it, or raise max_image_bytes"
        )
    with warnings.catch_warnings():
        # Our own pixel limit replaces Pillow's bomb warning, which would otherwise be printed.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise NotAnImageError(
                f"{origin}: not a recognised image; send JPEG, PNG, WebP, BMP, TIFF or GIF"
            ) from None
        except Image.DecompressionBombError:
            raise _too_many(origin, f"more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,}", max_pixels) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptImageError(f"{origin}: unreadable image header ({exc})") from None
    with img:
        if img.format not in SUPPORTED_FORMATS:
            raise UnsupportedImageFormatError(
                f"{origin}: {img.format} images are not accepted; "
                "convert to JPEG, PNG, WebP, BMP, TIFF or GIF"
            )
        width, height = img.size
        if width <= 0 or height <= 0:
            raise CorruptImageError(f"{origin}: header declares a {width}x{height} image")
        if width * height > max_pixels:
            raise _too_many(origin, f"{width}x{height} = {width * height:,}", max_pixels)
        yield img


def _too_many(origin: str, declared: str, max_pixels: int) -> TooManyPixelsError:
    return TooManyPixelsError(
        f"{origin}: the header declares {declared} pixels, over the {max_pixels:,}-pixel limit "
        "(refused before decoding); downscale the image, or raise max_image_pixels"
    )


def _orientation(img: Image.Image) -> OrientationCorrection:
    try:
        value = img.getexif().get(0x0112)
    except (OSError, SyntaxError, ValueError):  # a damaged EXIF block must not lose the image
        return NO_CORRECTION
    if value not in _EXIF_CORRECTIONS:
        return NO_CORRECTION
    rotation, mirrored = _EXIF_CORRECTIONS[int(value)]
    return OrientationCorrection(int(value), rotation, mirrored)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (h, w, 3) uint8. Alpha is composited onto white."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if arr.dtype == np.uint16 or arr.dtype.str in ("<u2", ">u2"):
            # 16-bit data: the high byte, without int64 copies (those made a 40 M pixel PNG cost ~780 MB).
            arr8 = (arr >> 8).astype(np.uint8)
        elif arr.dtype.kind == "f":
            scaled = np.clip(arr, 0.0, 1.0 if arr.max() <= 1.0 else 255.0)
            arr8 = (scaled * (255.0 if arr.max() <= 1.0 else 1.0)).round().astype(np.uint8)
        else:
            # 16-bit data (PNG and TIFF store it as I;16 or I): keep the high byte's range.
            arr8 = (np.clip(arr.astype(np.int64), 0, 65535) // 257).astype(np.uint8)
        return np.repeat(arr8[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode == "RGB":  # no converted copy of the frame
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise TypeError(f"expected an (h, w, 3) RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])
