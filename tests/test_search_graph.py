"""The graph index of large collections (faceledger/store/graph_index.py): it finds what exact
search finds on real faces, and a deleted face is neither returned nor kept in any file, not as its
vector and not as the graph links that would give its position away."""

from __future__ import annotations

import numpy as np
import pytest

from faceledger.models.threads import faiss_module
from faceledger.store import NewFace, SQLiteStore, graph_index, vector_index
from faceledger.store.vector_index import VectorIndex


@pytest.fixture(scope="module")
def faces(lfw, engine):
    """Real templates of 30 LFW people with two or more images (gallery: the first image of each,
    probes: the second), and 3,000 face-like distractors (two real people's templates mixed, plus
    noise), so the graph has a real face's neighbourhood to walk."""
    people = [paths for paths in lfw.people().values() if len(paths) >= 2][:30]
    gallery = np.stack([engine.embed(a)[0].template.vector for a, *_ in people]).astype(np.float32)
    probes = np.stack([engine.embed(b)[0].template.vector for _, b, *_ in people]).astype(np.float32)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(gallery), (2, 3000))
    t = rng.uniform(0.3, 0.7, (3000, 1)).astype(np.float32)
    mixed = t * gallery[i] + (1 - t) * gallery[j] + rng.normal(0, 0.02, (3000, gallery.shape[1])).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return gallery, probes, mixed


def _graph_links(graph) -> np.ndarray:
    hnsw = graph._inner.hnsw
    return faiss_module().rev_swig_ptr(hnsw.neighbors.data(), hnsw.neighbors.size())


def test_the_graph_finds_what_exact_search_finds_on_real_faces(faces):
    gallery, probes, mixed = faces
    data = np.concatenate([gallery, mixed])
    ix = VectorIndex(data.shape[1], exact_below=1000)
    ix.add(np.arange(len(data)), data, new=True)
    assert ix._graph is not None  # past the threshold: the graph serves searches
    hits = 0
    for q in probes:
        exact = np.argsort(-(data @ q))[:10]
        keys, scores = ix.search(q, 10)
        assert keys[0] == exact[0]  # the best match is the exact best match, mate or not
        assert np.allclose(scores, data[keys] @ q)  # scores are exact, not the graph's
        hits += len(set(keys.tolist()) & set(exact.tolist()))
    assert hits / (10 * len(probes)) >= 0.99


def test_a_deleted_face_is_not_returned_and_not_in_any_file(faces, tmp_path, monkeypatch):
    """Through the store: delete a face from a graph-indexed collection; its template is gone from
    every file, the saved graph holds no link to its node, and searches never return it."""
    monkeypatch.setattr(vector_index, "EXACT_BELOW", 500)
    gallery, probes, mixed = faces
    data = np.concatenate([gallery, mixed[:1000]])
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.create_collection("c", "m@1")
    stored = store.add_faces("c", [NewFace(v, (0, 0, 1, 1), 99.0) for v in data])
    assert store.search("c", probes[3], 1)[0][0].face_id == stored[3].face_id  # the person's own face
    assert next(iter(store._loaded.values())).index._graph is not None
    victim = stored[3].face_id
    assert store.delete_faces("c", [victim]) == [victim]
    for q in (data[3], probes[3]):
        assert victim not in [f.face_id for f, _ in store.search("c", q, 50)]
    store.close()  # writes the index files, graph included
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".hnsw" for p in files)
    for path in files:
        assert data[3].tobytes() not in path.read_bytes(), path
    saved = graph_index.GraphIndex.read(next(p for p in files if p.suffix == ".hnsw"), data.shape[1])
    dead = np.flatnonzero(saved._ids() < 0)
    assert len(dead) == 1  # the victim's node, a tombstone
    links = _graph_links(saved)
    assert not np.isin(links, dead).any()  # nothing links to it: its neighbours would locate it
    offsets = faiss_module().vector_to_array(saved._inner.hnsw.offsets)
    assert (links[offsets[dead[0]] : offsets[dead[0] + 1]] == -1).all()
    # reopened from those files (no rebuild: the tombstone is still there), it still finds the rest
    reopened = SQLiteStore(tmp_path / "s.sqlite")
    assert reopened.search("c", probes[5], 1)[0][0].face_id == stored[5].face_id
    assert next(iter(reopened._loaded.values())).index._graph.nodes == len(data)
    reopened.close()


def test_removing_the_entry_point_and_many_others_keeps_search_whole(faces):
    gallery, probes, mixed = faces
    data = np.concatenate([gallery, mixed])
    ix = VectorIndex(data.shape[1], exact_below=1000)
    ix.add(np.arange(len(data)), data, new=True)
    graph = ix._graph
    entry = int(graph._ids()[graph._inner.hnsw.entry_point])
    gone = [entry] + list(range(len(gallery), len(gallery) + 300))
    ix.remove(gone)
    assert graph._ids()[graph._inner.hnsw.entry_point] >= 0  # a live node took over
    left = np.setdiff1d(np.arange(len(data)), gone)
    for q in probes:
        keys, _ = ix.search(q, 10)
        assert not set(keys.tolist()) & set(gone)
        assert keys[0] == left[np.argmax(data[left] @ q)]
    # past REBUILD_FRACTION of tombstones the graph is rebuilt from the live templates only
    ix.remove(range(len(gallery) + 300, len(gallery) + 300 + int(graph_index.REBUILD_FRACTION * len(data))))
    assert ix._graph is not graph and ix._graph.dead() == 0 and ix._graph.nodes == len(ix)
