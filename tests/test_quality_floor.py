"""The moratorium preset's quality floor refuses bad probes (blurred, under-exposed, turned away),
not dark skin or a face's shape."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from faceledger.governance.policy import Policy


def _degraded(path, kind: str) -> bytes:
    img = Image.open(path).convert("RGB")
    if kind == "blurred":
        img = img.filter(ImageFilter.GaussianBlur(4))
    elif kind == "dark":  # a camera's under-exposure: gain, then the display gamma
        img = Image.fromarray((255.0 * (0.3 * np.asarray(img, np.float32) / 255.0) ** 1.5).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_the_floor_refuses_blurred_and_under_exposed_probes_and_passes_good_ones(engine, lfw):
    floor = Policy.load("moratorium").quality_floor
    paths = lfw.images()[::600][:20]
    verdicts = {}
    for kind in ("real", "blurred", "dark"):
        faces = [d.faces[0] for d in (engine.detect(_degraded(p, kind)) for p in paths) if d.faces]
        assert len(faces) >= 10, kind
        verdicts[kind] = [floor.failures(f.quality) for f in faces]
    assert all(any(f.startswith("sharpness") for f in v) for v in verdicts["blurred"]), verdicts["blurred"]
    assert all(verdicts["dark"]), verdicts["dark"]
    assert any("under-exposed" in " ".join(v) or "flat exposure" in " ".join(v) for v in verdicts["dark"])
    # good photos pass: LFW is mostly frontal and sharp (the 5-point yaw, which read smiles, tilts
    # and long noses as a turned head, refused 7 of these 20; the mesh's pose refuses none)
    assert not [v for v in verdicts["real"] if any("expos" in f for f in v)]
    assert sum(not v for v in verdicts["real"]) >= 0.9 * len(verdicts["real"]), verdicts["real"]


#: FairFace faces seen in profile or turned by 45 degrees or more (checked by eye), which the
#: 5-point yaw read as within 25 degrees of frontal: its nose offset collapses on a profile.
PROFILES = ("val/2580.jpg", "val/606.jpg", "val/1634.jpg", "val/237.jpg", "val/640.jpg", "val/1603.jpg",
            "val/295.jpg", "val/1597.jpg")


def test_the_floor_refuses_faces_turned_away_and_their_mirror_images(engine, fairface):
    floor = Policy.load("moratorium").quality_floor
    for name in PROFILES:
        img = Image.open(fairface.root / name).convert("RGB")
        yaws = []
        for probe in (img, img.transpose(Image.FLIP_LEFT_RIGHT)):
            buf = io.BytesIO()
            probe.save(buf, "PNG")
            q = engine.detect(buf.getvalue(), prealigned=True).faces[0].quality
            assert any(f.startswith("yaw") for f in floor.failures(q)), (name, q.pose)
            yaws.append(q.pose.yaw)
        assert np.sign(yaws[0]) == -np.sign(yaws[1]), (name, yaws)  # the mirror image turns the other way


def test_the_exposure_floor_does_not_refuse_dark_skin(engine, fairface):
    """FairFace faces annotated Black that the old brightness floor (25) refused: well exposed
    photos of darker skin. The preset's exposure criteria refuse (almost) none of them."""
    floor = Policy.load("moratorium").quality_floor
    assert floor.min_brightness == 0
    dark_skin = []
    for r in fairface.records():
        if r.race == "Black" and len(dark_skin) < 30:
            d = engine.detect(r.path, prealigned=True)
            if d.faces and d.faces[0].quality.brightness < 25:
                dark_skin.append(d.faces[0].quality)
    assert len(dark_skin) == 30
    exposure = [f for q in dark_skin for f in floor.failures(q) if "expos" in f or "shadows" in f or "brightness" in f]
    assert len(exposure) <= 1, exposure


def test_sharpness_measures_focus_not_how_dark_the_skin_is(engine, fairface):
    """The adversary is a darker face, not a blurred one: the same sharp photos with the face's
    reflectance cut to 0.3 (mean brightness ~11, darker than most photos of dark skin) must not
    read as blurred. The previous measure (the Laplacian variance of luma, which scales with the
    square of reflectance) refused 8 of these 15 for sharpness."""
    floor = Policy.load("moratorium").quality_floor
    darkened = []
    for r in fairface.records():
        if r.race != "White" or len(darkened) == 15:
            continue
        q = engine.detect(r.path, prealigned=True).faces[0].quality
        if any(f.startswith("sharpness") for f in floor.failures(q)):
            continue
        pixels = np.asarray(Image.open(r.path).convert("RGB"), np.float32)
        buf = io.BytesIO()
        Image.fromarray((0.3 * pixels).round().astype(np.uint8)).save(buf, "PNG")
        darkened.append(engine.detect(buf.getvalue(), prealigned=True).faces[0].quality)
    assert len(darkened) == 15
    assert sum(any(f.startswith("sharpness") for f in floor.failures(q)) for q in darkened) <= 1
