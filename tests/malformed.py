"""A corpus of malformed requests for both wire protocols: every one must get a typed 4xx.

Generated, not recorded: sizes, formats, decompression bombs, deep JSON nesting, wrong types,
S3Object names that cannot be files, multipart bodies that cannot be parsed, images too small
for a detector. Deterministic (seeded), so a failure names the same case every run.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

TARGET = "RekognitionService."
#: Operations with their simplest valid body (the corpus breaks one thing at a time).
JSON_OPS = {
    "DetectFaces": {"Image": {"Bytes": ""}},
    "CompareFaces": {"SourceImage": {"Bytes": ""}, "TargetImage": {"Bytes": ""}},
    "IndexFaces": {"CollectionId": "fuzz", "Image": {"Bytes": ""}},
    "SearchFacesByImage": {"CollectionId": "fuzz", "Image": {"Bytes": ""}},
    "SearchUsersByImage": {"CollectionId": "fuzz", "Image": {"Bytes": ""}},
}
OTHER_OPS = {
    "CreateCollection": {"CollectionId": "fuzz-new"},
    "DescribeCollection": {"CollectionId": "fuzz"},
    "ListFaces": {"CollectionId": "fuzz"},
    "SearchFaces": {"CollectionId": "fuzz", "FaceId": "00000000-0000-0000-0000-000000000000"},
    "DeleteFaces": {"CollectionId": "fuzz", "FaceIds": ["00000000-0000-0000-0000-000000000000"]},
    "CreateUser": {"CollectionId": "fuzz", "UserId": "u"},
    "AssociateFaces": {"CollectionId": "fuzz", "UserId": "u", "FaceIds": ["00000000-0000-0000-0000-000000000000"]},
    "ListCollections": {},
}
REST_IMAGE_ROUTES = [
    ("/v1/faces/detect", "image"),
    ("/v1/collections/fuzz/faces", "image"),
    ("/v1/collections/fuzz/search", "image"),
    ("/v1/collections/fuzz/users/search", "image"),
]


@dataclass
class Case:
    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: A well-formed request that is merely odd (a picture with no face to DetectFaces): 200 is right.
    may_succeed: bool = False


def png(w: int, h: int, mode: str = "RGB", fill=120) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), fill).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(w: int, h: int, bit_depth: int = 8, colour: int = 2, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR declares w x h: the pixels need not exist (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat or zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def png16_bomb(side: int = 6300) -> bytes:
    """A 16-bit grey PNG of side x side, all zero: ~77 KB that decodes to 40 M pixels."""
    row = b"\0" + b"\0" * (2 * side)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return png_header_only(side, side, bit_depth=16, colour=0, idat=data)


def images(face: bytes) -> list[tuple[str, bytes]]:
    """Bytes that are not a usable image, each for its own reason."""
    rng = random.Random(7)
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 80, 70)).save(jpeg, "JPEG")
    jpg = jpeg.getvalue()
    out = [
        ("empty", b""),
        ("one byte", b"\0"),
        ("random 1 KB", bytes(rng.getrandbits(8) for _ in range(1024))),
        ("text", b"hello, this is not an image"),
        ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
        ("png signature only", b"\x89PNG\r\n\x1a\n"),
        ("truncated png", png(64, 64)[:40]),
        ("truncated jpeg", jpg[: len(jpg) // 2]),
        ("jpeg header only", jpg[:20]),
        ("truncated face", face[: len(face) // 3]),
        ("face with garbage tail", face[:2000] + bytes(rng.getrandbits(8) for _ in range(500))),
        ("png zero width", png_header_only(0, 10)),
        ("png zero height", png_header_only(10, 0)),
        ("png 100k x 100k header", png_header_only(100_000, 100_000)),
        ("png 2^31 side header", png_header_only(2**31 - 1, 2)),
        ("png 7000x7000 header, no data", png_header_only(7000, 7000)),
        ("png bad bit depth", png_header_only(10, 10, bit_depth=3)),
        ("png bad colour type", png_header_only(10, 10, colour=5)),
        ("gif header only", b"GIF89a\xff\xff\xff\xff\x00\x00\x00"),
        ("bmp header only", b"BM" + b"\0" * 12 + struct.pack("<IiiHH", 40, 100000, 100000, 1, 24)),
        ("tiff header only", b"II*\x00\x08\x00\x00\x00"),
        ("ico", b"\0\0\1\0\1\0\x10\x10\0\0\1\0\x20\0" + b"\0" * 40),
        ("psd", b"8BPS\0\1" + b"\0" * 30),
        ("webp riff only", b"RIFF\x10\0\0\0WEBPVP8 "),
        ("16-bit png 6300x6300", png16_bomb()),
    ]
    for w, h in [(1, 1), (2, 2), (3, 3), (5, 5), (7, 7), (9, 9), (11, 11), (13, 13), (15, 15), (19, 19),
                 (1, 500), (500, 1), (4, 200), (200, 4), (8, 1000), (1000, 8), (30, 3000)]:
        out.append((f"{w}x{h} image", png(w, h)))
    for mode in ("1", "L", "LA", "P", "RGBA", "I", "F", "CMYK", "I;16"):
        out.append((f"tiny {mode}", png(6, 6, mode=mode, fill=0) if mode not in ("CMYK", "F", "I") else _tiff(mode)))
    return out


def _decodes(data: bytes) -> bool:
    """A whole, well-formed picture (DetectFaces may answer it with no faces)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.width * img.height <= 40_000_000 and img.format in ("PNG", "TIFF")
    except Exception:  # noqa: BLE001 - any failure means "not a picture" here
        return False


def _tiff(mode: str) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (6, 6)).save(buf, "TIFF")
    return buf.getvalue()


def nested(depth: int, opener: str = "[") -> bytes:
    if opener == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


#: JSON that parses (odd but valid): an operation that needs no image may well succeed.
WELL_FORMED_JSON = {"duplicate keys", "bom", "nested brackets inside a string"}
#: Multipart bodies that still carry a whole picture (a face-less one: no faces, not an error).
MULTIPART_WITH_A_PICTURE = {"image 2x2", "max_faces text", "boundary 200 chars", "charset bogus"}


def bodies_not_json() -> list[tuple[str, bytes]]:
    out = [
        ("garbage", b"\xff\xfe\x00garbage"), ("truncated", b'{"CollectionId": "fu'), ("array", b"[]"),
        ("string", b'"x"'), ("number", b"42"), ("null", b"null"), ("true", b"true"),
        ("invalid utf-8", b'{"CollectionId": "\xff\xfe"}'), ("lone surrogate", b'{"CollectionId": "\\ud800"}'),
        ("nan", b'{"MaxFaces": NaN}'), ("huge number", b'{"MaxFaces": 1' + b"0" * 5000 + b"}"),
        ("duplicate keys", b'{"CollectionId": "a", "CollectionId": "b"}'), ("bom", b"\xef\xbb\xbf{}"),
        ("nul", b"{\x00}"), ("whitespace only", b"   \n\t"),
    ]
    for depth in (40, 100, 999, 1000, 1001, 5000, 100_000):
        out.append((f"nested [ x{depth}", nested(depth, "[")))
        out.append((f"nested {{ x{depth}", nested(depth, "{")))
    out.append(("nested inside Image", b'{"Image": ' + nested(5000, "[") + b"}"))
    out.append(("nested brackets inside a string", json.dumps({"CollectionId": "[" * 5000}).encode()))
    return out


def wrong_values() -> list[tuple[str, dict]]:
    """Members of the wrong type or out of range, for the image operations."""
    b = {"Bytes": base64.b64encode(png(40, 40)).decode()}
    return [
        ("Image a string", {"Image": "abc"}), ("Image a list", {"Image": [1, 2]}), ("Image empty", {"Image": {}}),
        ("Image both", {"Image": {**b, "S3Object": {"Bucket": "b", "Name": "n"}}}),
        ("Bytes a number", {"Image": {"Bytes": 5}}), ("Bytes a list", {"Image": {"Bytes": [1]}}),
        ("Bytes not base64", {"Image": {"Bytes": "!!!not base64!!!"}}), ("Bytes padding", {"Image": {"Bytes": "abc"}}),
        ("MaxFaces 0", {"Image": b, "MaxFaces": 0}), ("MaxFaces -1", {"Image": b, "MaxFaces": -1}),
        ("MaxFaces huge", {"Image": b, "MaxFaces": 10**30}), ("MaxFaces string", {"Image": b, "MaxFaces": "5"}),
        ("MaxFaces float", {"Image": b, "MaxFaces": 1.5}), ("threshold 101", {"Image": b, "FaceMatchThreshold": 101}),
        ("threshold -1", {"Image": b, "FaceMatchThreshold": -1}), ("QualityFilter bogus", {"Image": b, "QualityFilter": "X"}),
        ("unknown member", {"Image": b, "Bogus": 1}), ("CollectionId empty", {"Image": b, "CollectionId": ""}),
        ("CollectionId 300 chars", {"Image": b, "CollectionId": "c" * 300}),
        ("CollectionId slash", {"Image": b, "CollectionId": "../etc"}), ("CollectionId nul", {"Image": b, "CollectionId": "a\0b"}),
        ("CollectionId number", {"Image": b, "CollectionId": 5}), ("Attributes bogus", {"Image": b, "Attributes": ["X"]}),
        ("ExternalImageId 300", {"Image": b, "ExternalImageId": "e" * 300}),
    ]


def s3_names(root: Path) -> list[tuple[str, dict]]:
    """Object names that cannot be read as an image file, made real under ``root``."""
    bucket = root / "photos"
    bucket.mkdir(parents=True, exist_ok=True)
    (bucket / "loop-a").unlink(missing_ok=True)
    (bucket / "loop-b").unlink(missing_ok=True)
    os.symlink(bucket / "loop-b", bucket / "loop-a")
    os.symlink(bucket / "loop-a", bucket / "loop-b")
    (bucket / "self").unlink(missing_ok=True)
    os.symlink(bucket / "self", bucket / "self")
    (bucket / "outside").unlink(missing_ok=True)
    os.symlink("/etc/hostname", bucket / "outside")
    (bucket / "zero").unlink(missing_ok=True)
    os.symlink("/dev/zero", bucket / "zero")
    (bucket / "dir").mkdir(exist_ok=True)
    (bucket / "empty.jpg").write_bytes(b"")
    (bucket / "big.jpg").write_bytes(b"\xff\xd8" + b"\0" * (6 * 1024 * 1024))
    (bucket / "text.jpg").write_bytes(b"not an image")
    fifo = bucket / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    (bucket / "tiny.png").write_bytes(png(3, 3))
    names = [
        ("symlink loop", "loop-a"), ("self symlink", "self"), ("symlink loop in a folder", "loop-a/x.jpg"),
        ("255+ component", "a" * 256), ("1000-char component", "b" * 1000), ("4097-char path", "/".join(["c" * 200] * 21)),
        ("nul byte", "a\x00b.jpg"), ("nul only", "\x00"), ("outside via symlink", "outside"), ("/dev/zero", "zero"),
        ("dotdot", "../../etc/passwd"), ("absolute", "/etc/passwd"), ("a folder", "dir"), ("the bucket", "."),
        ("empty file", "empty.jpg"), ("over the size limit", "big.jpg"), ("not an image", "text.jpg"), ("fifo", "fifo"),
        ("missing", "nope.jpg"), ("file as folder", "text.jpg/x"), ("3x3 image", "tiny.png"), ("empty name", ""),
        ("newline", "a\nb"), ("lone surrogate", "\ud800"), ("backslash", "..\\..\\x"), ("trailing slash", "dir/"),
    ]
    out = [(f"S3 {label}", {"Image": {"S3Object": {"Bucket": "photos", "Name": name}}}) for label, name in names]
    out += [
        ("S3 missing bucket", {"Image": {"S3Object": {"Bucket": "nope", "Name": "x.jpg"}}}),
        ("S3 bucket dotdot", {"Image": {"S3Object": {"Bucket": "..", "Name": "etc/passwd"}}}),
        ("S3 bucket nul", {"Image": {"S3Object": {"Bucket": "p\x00", "Name": "x.jpg"}}}),
        ("S3 bucket 300", {"Image": {"S3Object": {"Bucket": "p" * 300, "Name": "x.jpg"}}}),
        ("S3 Version", {"Image": {"S3Object": {"Bucket": "photos", "Name": "tiny.png", "Version": "1"}}}),
        ("S3 no Name", {"Image": {"S3Object": {"Bucket": "photos"}}}),
        ("S3 Name a number", {"Image": {"S3Object": {"Bucket": "photos", "Name": 5}}}),
    ]
    return out


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def multipart_cases(face: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    ok = "multipart/form-data; boundary=XyZ"
    good = multipart([("image", "f.png", png(40, 40))])
    return [
        ("no boundary", {"content-type": "multipart/form-data"}, good),
        ("empty boundary", {"content-type": "multipart/form-data; boundary="}, good),
        ("wrong boundary", {"content-type": "multipart/form-data; boundary=other"}, good),
        ("truncated", {"content-type": ok}, good[: len(good) // 2]),
        ("no closing", {"content-type": ok}, good[:-8]),
        ("empty body", {"content-type": ok}, b""),
        ("garbage", {"content-type": ok}, b"\xff\xfe garbage \r\n\r\n"),
        ("no disposition", {"content-type": ok}, b"--XyZ\r\nX: y\r\n\r\ndata\r\n--XyZ--\r\n"),
        ("no name", {"content-type": ok}, b'--XyZ\r\nContent-Disposition: form-data\r\n\r\ndata\r\n--XyZ--\r\n'),
        ("header without colon", {"content-type": ok}, b"--XyZ\r\nnonsense\r\n\r\ndata\r\n--XyZ--\r\n"),
        ("no image field", {"content-type": ok}, multipart([("other", None, b"1")])),
        ("image as text field", {"content-type": ok}, multipart([("image", None, b"!!not base64!!")])),
        ("image empty file", {"content-type": ok}, multipart([("image", "f.png", b"")])),
        ("image not an image", {"content-type": ok}, multipart([("image", "f.png", b"hello")])),
        ("image 2x2", {"content-type": ok}, multipart([("image", "f.png", png(2, 2))])),
        ("image truncated face", {"content-type": ok}, multipart([("image", "f.jpg", face[:1000])])),
        ("max_faces text", {"content-type": ok}, multipart([("image", "f.png", png(40, 40)), ("max_faces", None, b"many")])),
        ("1500 fields", {"content-type": ok}, multipart([(f"f{i}", None, b"x") for i in range(1500)])),
        ("1500 files", {"content-type": ok}, multipart([(f"f{i}", "x", b"x") for i in range(1500)])),
        ("boundary 200 chars", {"content-type": "multipart/form-data; boundary=" + "b" * 200},
         multipart([("image", "f.png", png(40, 40))], "b" * 200)),
        ("header 10 KB", {"content-type": ok},
         b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"" + b"f" * 10000 + b"\"\r\n\r\nx\r\n--XyZ--\r\n"),
        ("charset bogus", {"content-type": ok + "; charset=bogus"}, good),
        ("bad part encoding", {"content-type": ok},
         b'--XyZ\r\nContent-Disposition: form-data; name="image"\r\nContent-Transfer-Encoding: base64\r\n\r\n###\r\n--XyZ--\r\n'),
        ("non-utf8 name", {"content-type": ok}, b'--XyZ\r\nContent-Disposition: form-data; name="\xff\xfe"\r\n\r\nx\r\n--XyZ--\r\n'),
    ]


def corpus(face: bytes, s3_root: Path, *, max_request_bytes: int = 8 * 1024 * 1024) -> list[Case]:
    """At least 500 malformed requests across both protocols."""
    cases: list[Case] = []
    amz = {"content-type": "application/x-amz-json-1.1"}

    def rek(name: str, op: str, body: bytes, headers: dict | None = None, may_succeed: bool = False) -> None:
        cases.append(Case(f"{op}: {name}", "POST", "/", {**amz, "x-amz-target": TARGET + op, **(headers or {})}, body,
                          may_succeed))

    img_list = images(face)
    pictures = {label for label, data in img_list if _decodes(data)}
    for op, template in JSON_OPS.items():
        member = "SourceImage" if op == "CompareFaces" else "Image"
        for label, data in img_list:
            body = json.loads(json.dumps(template))
            body[member] = {"Bytes": base64.b64encode(data).decode()}
            if op == "CompareFaces":
                body["TargetImage"] = {"Bytes": base64.b64encode(png(3, 3)).decode()}
            rek(label, op, json.dumps(body).encode(), may_succeed=op in ("DetectFaces", "IndexFaces") and label in pictures)
    for op in list(JSON_OPS) + list(OTHER_OPS):
        for label, body in bodies_not_json():
            rek(label, op, body, may_succeed=op in OTHER_OPS and label in WELL_FORMED_JSON)
    for op in ("DetectFaces", "IndexFaces", "SearchFacesByImage"):
        for label, members in wrong_values():
            body = {**JSON_OPS[op], **members}
            rek(label, op, json.dumps(body).encode(), may_succeed=op == "IndexFaces" and label == "MaxFaces huge")
    for op in ("DetectFaces", "IndexFaces"):
        for label, members in s3_names(s3_root):
            rek(label, op, json.dumps({**JSON_OPS[op], **members}).encode(), may_succeed=label == "S3 3x3 image")
    for label, target in [("no target", None), ("empty target", ""), ("other service", "S3.GetObject"),
                          ("unknown op", TARGET + "DetectLabels"), ("quote", TARGET + 'Bad"Op'),
                          ("newline", TARGET + "A\\nB"), ("long", TARGET + "X" * 5000), ("prefix only", TARGET)]:
        headers = dict(amz)
        if target is not None:
            headers["x-amz-target"] = target
        cases.append(Case(f"target: {label}", "POST", "/", headers, b"{}"))
    too_big = b"x" * (max_request_bytes + 1)
    rek("body over the limit", "DetectFaces", too_big)
    rek("declared length over the limit", "DetectFaces", b"{}", {"content-length": str(max_request_bytes * 4)})
    rek("image bytes over the image limit", "DetectFaces",
        json.dumps({"Image": {"Bytes": base64.b64encode(b"\xff\xd8" + b"\0" * (5 * 1024 * 1024 + 10)).decode()}}).encode())

    # --- the native REST API ------------------------------------------------------------------------
    for path, field_name in REST_IMAGE_ROUTES:
        for label, data in img_list[:30]:
            cases.append(Case(f"REST {path}: {label}", "POST", path, {"content-type": "application/json"},
                              json.dumps({field_name: base64.b64encode(data).decode()}).encode(),
                              may_succeed=path.endswith(("detect", "faces")) and label in pictures))
        for label, body in bodies_not_json():
            cases.append(Case(f"REST {path}: {label}", "POST", path, {"content-type": "application/json"}, body))
        for label, headers, body in multipart_cases(face):
            cases.append(Case(f"REST {path} multipart: {label}", "POST", path, headers, body,
                              may_succeed=path.endswith(("detect", "faces")) and label in MULTIPART_WITH_A_PICTURE))
    for label, body in bodies_not_json()[:12]:
        cases.append(Case(f"REST compare: {label}", "POST", "/v1/faces/compare", {"content-type": "application/json"}, body))
        cases.append(Case(f"REST collections: {label}", "POST", "/v1/collections", {"content-type": "application/json"}, body))
        cases.append(Case(f"REST review: {label}", "POST", "/v1/ledger/1/review", {"content-type": "application/json"}, body))
    for label, path in [("long collection", "/v1/collections/" + "c" * 5000), ("nul", "/v1/collections/a%00b"),
                        ("entry not a number", "/v1/ledger/abc/candidates"), ("entry huge", "/v1/ledger/" + "9" * 40 + "/candidates"),
                        ("max_results text", "/v1/collections?max_results=abc"), ("max_results huge", "/v1/collections?max_results=" + "9" * 40),
                        ("bad token", "/v1/collections?next_token=%ff%fe"), ("face id junk", "/v1/collections/fuzz/faces/..%2f..%2fx/matches"),
                        ("unicode digits", "/v1/collections/fuzz/faces?max_results=%C2%B2")]:
        cases.append(Case(f"REST GET {label}", "GET", path))
    return cases
