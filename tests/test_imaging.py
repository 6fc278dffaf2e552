"""Every odd input decodes to upright 8-bit RGB or fails with its own typed error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from faceledger import errors
from faceledger.vision.imaging import decode_image, load_image

from .conftest import encode


def gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2), "RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_each_supported_format_decodes_to_rgb(fmt):
    d = decode_image(encode(gradient(), fmt))
    assert d.pixels.shape == (48, 64, 3) and d.pixels.dtype == np.uint8
    assert d.format == fmt
    # lossy formats drift a little; the picture must still be the gradient
    assert abs(int(d.pixels[24, 60, 0]) - int(d.pixels[24, 3, 0])) > 150


def test_animated_gif_gives_its_first_frame():
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    blue = Image.new("RGB", (32, 32), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    px = decode_image(data).pixels
    assert px[16, 16, 0] > 200 and px[16, 16, 2] < 50


def test_grayscale_becomes_three_equal_channels():
    px = decode_image(encode(gradient().convert("L"), "PNG")).pixels
    assert px.shape == (48, 64, 3)
    assert np.array_equal(px[..., 0], px[..., 1]) and np.array_equal(px[..., 1], px[..., 2])


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    px = decode_image(encode(cmyk, "JPEG", quality=95)).pixels
    assert px[8, 8, 0] > 200 and px[8, 8, 1] < 60 and px[8, 8, 2] < 60


def test_16bit_png_is_scaled_to_8bit():
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    img = Image.fromarray(values)
    assert img.mode.startswith("I;16")
    px = decode_image(encode(img, "PNG")).pixels
    assert px[0, :, 0].tolist() == [0, 128, 255]


def test_16bit_tiff_is_scaled_to_8bit():
    values = np.array([[0, 65535]], dtype=np.uint16)
    px = decode_image(encode(Image.fromarray(values), "TIFF")).pixels
    assert px[0, :, 0].tolist() == [0, 255]


def test_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    px = decode_image(encode(rgba, "PNG")).pixels
    assert px[4, 4].tolist() == [255, 255, 255]
    assert px[0, 0].tolist() == [10, 20, 30]


def test_palette_with_transparency_is_composited():
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    p.putpixel((1, 1), 1)
    px = decode_image(encode(p, "PNG", transparency=0)).pixels
    assert px[0, 0].tolist() == [255, 255, 255] and px[1, 1].tolist() == [200, 0, 0]


@pytest.mark.parametrize("orientation,rotation", [(3, 180), (6, 90), (8, 270)])
def test_exif_orientation_is_applied_and_reported(orientation, rotation):
    upright = gradient(64, 48)
    # store the pixels the way a camera would, so that applying the tag gives `upright` back
    stored = upright.rotate(rotation, expand=True)  # counter-clockwise by the correction's angle
    exif = Image.Exif()
    exif[0x0112] = orientation
    d = decode_image(encode(stored, "JPEG", quality=95, exif=exif))
    assert (d.width, d.height) == (64, 48)
    assert d.orientation.exif_orientation == orientation
    assert d.orientation.rotation == rotation and d.orientation.name == f"ROTATE_{rotation}"
    assert np.abs(d.pixels.astype(int) - np.asarray(upright).astype(int)).mean() < 8


def test_empty_input():
    with pytest.raises(errors.EmptyImageError) as e:
        decode_image(b"")
    assert e.value.code == "InvalidImageFormatException"


def test_not_an_image():
    with pytest.raises(errors.NotAnImageError) as e:
        decode_image(b"this is a text file, not a photo\n" * 10)
    assert "JPEG, PNG" in str(e.value)


def test_truncated_jpeg():
    data = encode(gradient(256, 256), "JPEG", quality=95)
    with pytest.raises(errors.CorruptImageError) as e:
        decode_image(data[: len(data) // 2])
    assert "truncated or corrupt" in str(e.value)


def test_corrupt_png_data():
    data = bytearray(encode(gradient(), "PNG"))
    data[60:80] = b"\x00" * 20  # damage the compressed pixel stream
    with pytest.raises(errors.CorruptImageError):
        decode_image(bytes(data))


def test_unsupported_format_is_named():
    with pytest.raises(errors.UnsupportedImageFormatError) as e:
        decode_image(encode(gradient(32, 32), "ICO"))
    assert "ICO" in str(e.value)


def test_too_many_bytes():
    with pytest.raises(errors.ImageBytesTooLargeError) as e:
        decode_image(b"\xff\xd8" + b"\x00" * 2000, max_bytes=1000)
    assert e.value.code == "ImageTooLargeException"


def test_file_over_byte_limit_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(encode(gradient(), "PNG") + b"\x00" * 10_000)
    with pytest.raises(errors.ImageBytesTooLargeError):
        load_image(big, max_bytes=5_000)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size but carries almost no data: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header():
    data = _png_header_only(100_000, 100_000)
    assert len(data) < 200
    with pytest.raises(errors.TooManyPixelsError) as e:
        decode_image(data)
    assert "over the 40,000,000-pixel limit" in str(e.value)


def test_pixel_limit_is_configurable():
    with pytest.raises(errors.TooManyPixelsError, match="64x48 = 3,072 pixels"):
        decode_image(encode(gradient(64, 48), "PNG"), max_pixels=1000)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_image("/nonexistent/photo.jpg")


def test_each_rejection_has_its_own_class():
    classes = {errors.EmptyImageError, errors.NotAnImageError, errors.CorruptImageError,
               errors.UnsupportedImageFormatError, errors.ImageBytesTooLargeError, errors.TooManyPixelsError}
    assert len(classes) == 6
    assert all(issubclass(c, errors.FaceledgerError) for c in classes)
