"""Bytes -> 8-bit RGB pixels. The only module that touches encoded image data.

Limits are checked in order of cost: byte length first, then the pixel count declared in the
header (before any pixel is decoded, so a decompression bomb costs nothing), then the decode.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceledger.errors import CorruptImageError, EmptyImageError, ImageBytesTooLargeError, NotAnImageError, TooManyPixelsError, UnsupportedImageFormatError

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
    if size > max_bytes:
        raise ImageBytesTooLargeError(
            f"{path}: {size:,} bytes is over the {max_bytes:,}-byte limit; "
            "downscale or recompress it, or raise max_image_bytes"
        )
    return path.read_bytes()


def decode_image(
    data: bytes,
    *,
    max_bytes: int = 5 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    origin: str = "image bytes",
) -> DecodedImage:
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
        except (OSError, SyntaxError, ValueError) as exc:
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
        if arr.dtype.kind == "f":
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
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise TypeError(f"expected an (h, w, 3) RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])
