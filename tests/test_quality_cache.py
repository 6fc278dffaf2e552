"""The quality criteria cache (evaluation/quality_cache.py) that lets a quality floor be swept
offline: a cached measure must be the measure, and a changed image or changed code must never be
served a stale one."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image, ImageFilter

from faceledger.evaluation import quality_cache
from faceledger.evaluation.quality_cache import criteria_for


def test_cached_criteria_are_the_measured_ones_and_an_edited_image_is_measured_again(engine, fairface, tmp_path):
    db = tmp_path / "q.sqlite"
    src = fairface.root / "val/2580.jpg"  # a face seen in profile
    probe = tmp_path / "probe.jpg"
    shutil.copy(src, probe)
    first = criteria_for([probe], engine, prealigned=True, cache_path=db)[probe]
    fresh = engine.detect(probe, prealigned=True).faces[0].quality
    assert first.quality == fresh
    assert first.mirror_cos < 1.0
    # the same bytes again: from the cache, identical
    assert criteria_for([probe], engine, prealigned=True, cache_path=db)[probe] == first
    # the adversary is a stale entry: the same path now holds a blurred photo, which must be measured anew
    Image.open(src).filter(ImageFilter.GaussianBlur(4)).save(probe, "JPEG", quality=95)
    again = criteria_for([probe], engine, prealigned=True, cache_path=db)[probe]
    assert again.quality.sharpness < first.quality.sharpness - 20
    # the mirrored variant reads the turn the other way (the estimator's symmetry)
    mirrored = criteria_for([src], engine, variant="mirrored", prealigned=True, cache_path=db)[src]
    real = criteria_for([src], engine, prealigned=True, cache_path=db)[src]
    assert np.sign(mirrored.quality.pose.yaw) == -np.sign(real.quality.pose.yaw)
    assert abs(mirrored.quality.pose.yaw + real.quality.pose.yaw) < 10


def test_the_cache_key_changes_with_the_code_and_the_recipe(engine, monkeypatch):
    key = quality_cache.code_key(engine, True, None)
    assert quality_cache.code_key(engine, False, (0.27, 0.31, 0.44, 0.44)) != key
    source = quality_cache.inspect.getsource
    monkeypatch.setattr(quality_cache.inspect, "getsource",
                        lambda m: source(m) + ("\n# edited" if m is quality_cache.quality else ""))
    assert quality_cache.code_key(engine, True, None) != key
