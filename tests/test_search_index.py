"""The inverted file of large collections (faceledger/store/vector_index.py): it finds what exact
search finds on real faces, and a removed face leaves no trace in the saved files: they are byte for
byte the files saved had its template been any other vector."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from faceledger.store.vector_index import NLIST, VectorIndex

BASE = NLIST * 40  # past the exact threshold (faiss wants ~39 training points a list)


@pytest.fixture(scope="module")
def faces(lfw, engine, tmp_path_factory):
    """Real templates of 30 LFW people with two or more images (gallery: the first image of each,
    probes: the second); 41,000 face-like distractors (two real people's templates mixed, plus
    noise); and an index of both, trained and saved once."""
    people = [paths for paths in lfw.people().values() if len(paths) >= 2][:30]
    gallery = np.stack([engine.embed(a)[0].template.vector for a, *_ in people]).astype(np.float32)
    probes = np.stack([engine.embed(b)[0].template.vector for _, b, *_ in people]).astype(np.float32)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(gallery), (2, BASE))
    t = rng.uniform(0.3, 0.7, (BASE, 1)).astype(np.float32)
    mixed = t * gallery[i] + (1 - t) * gallery[j] + rng.normal(0, 0.03, (BASE, gallery.shape[1])).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    data = np.concatenate([gallery, mixed])
    ix = VectorIndex(data.shape[1], exact_below=BASE)
    ix.add(np.arange(len(data)), data, new=True)
    assert ix._ivf is not None  # past the threshold: the inverted file serves searches
    saved = tmp_path_factory.mktemp("index") / "i.npz"
    ix.save(saved, {"seq": 1})
    return gallery, probes, data, ix, saved


def _copy(saved, folder):
    folder.mkdir()
    for f in saved.parent.iterdir():
        shutil.copy(f, folder / f.name)
    return VectorIndex.load(folder / saved.name, 128)[0]


def test_the_index_finds_what_exact_search_finds_on_real_faces(faces):
    gallery, probes, data, ix, _ = faces
    hits = 0
    for q in probes:
        exact = np.argsort(-(data @ q))[:10]
        keys, scores = ix.search(q, 10)
        assert keys[0] == exact[0]  # the best match is the exact best match
        assert np.allclose(scores, data[keys] @ q, atol=1e-6)  # scores are exact, not the codes'
        hits += len(set(keys.tolist()) & set(exact.tolist()))
    assert hits / (10 * len(probes)) >= 0.99


def test_a_removed_face_is_not_returned_and_leaves_no_trace_in_the_files(faces, tmp_path):
    """Two copies of one trained index take a last face each (a real one, and another vector in
    its place), remove it and save: the files must be identical, so nothing of the removed
    template, not its float32 bytes nor its codes, is in them."""
    gallery, probes, data, _, saved = faces
    victim, other = probes[3], probes[7] * -1
    files = {}
    for name, vector in (("real", victim), ("other", other)):
        ix = _copy(saved, tmp_path / name)
        key = len(data) + 1
        ix.add([key], vector[None, :])
        assert ix.search(probes[3], 1)[0][0] == (key if name == "real" else 3)
        ix.remove([key])
        assert key not in ix.search(vector, 50)[0]  # not returned, even to its own template
        ix.save(tmp_path / name / "i.npz", {"seq": 2})
        files[name] = {f.name: f.read_bytes() for f in (tmp_path / name).iterdir()}
    assert files["real"].keys() == files["other"].keys() and ".ivf" in "".join(files["real"])
    for name, content in files["real"].items():
        assert victim.tobytes() not in content, name
        assert content == files["other"][name], name
    reopened = VectorIndex.load(tmp_path / "real" / "i.npz", 128)[0]
    assert reopened._ivf is not None and reopened.search(probes[5], 1)[0][0] == 5
