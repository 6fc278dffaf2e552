"""Dataset loaders on the real copies, and the LFW fetch path against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading

import pytest
from PIL import Image

from faceledger import errors
from faceledger.evaluation.datasets import LFW, FairFace, Source, fetch_lfw

from .conftest import encode


def test_lfw_view2_has_ten_folds_of_300_plus_300(lfw):
    folds = lfw.pairs()
    assert len(folds) == 10
    for fold in folds:
        assert len(fold) == 600 and sum(p.mated for p in fold) == 300
        assert all(p.a.is_file() and p.b.is_file() for p in fold)
    assert all(p.a.parent == p.b.parent for f in folds for p in f if p.mated)
    assert all(p.a.parent != p.b.parent for f in folds for p in f if not p.mated)


def test_lfw_people(lfw):
    people = lfw.people()
    assert len(people) == 5749
    assert sum(len(v) >= 2 for v in people.values()) == 1680
    assert sum(len(v) for v in people.values()) == 13233


def test_fairface_labels(fairface):
    records = fairface.records()
    assert len(records) == 12000
    assert {r.race for r in records} == {
        "White", "Black", "East Asian", "Southeast Asian", "Indian", "Middle Eastern", "Latino_Hispanic"
    }
    assert {r.gender for r in records} == {"Male", "Female"}
    assert all(r.path.is_file() for r in records[:50])


def test_missing_dataset_says_how_to_get_it(settings, tmp_path):
    empty = settings.replace(data=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(errors.DatasetError, match="faceledger datasets fetch lfw"):
        LFW.locate(empty)
    with pytest.raises(errors.DatasetError, match="FACELEDGER_DATA"):
        FairFace.locate(empty)


# --- fetching: the real download code, served locally ---------------------------------------------


@pytest.fixture
def served(tmp_path):
    """A tiny LFW-shaped archive and pairs file behind a local HTTP server."""
    root = tmp_path / "www"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("Ann_Example", "Bob_Example"):
            for n in (1, 2):
                data = encode(Image.new("RGB", (250, 250), (n * 60, 90, 120)), "JPEG")
                info = tarfile.TarInfo(f"lfw-deepfunneled/{name}/{name}_{n:04d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (root / "lfw.tgz").write_bytes(buf.getvalue())
    (root / "pairs.txt").write_text("1\t1\nAnn_Example\t1\t2\nAnn_Example\t1\tBob_Example\t2\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    md5 = {f: hashlib.md5((root / f).read_bytes()).hexdigest() for f in ("lfw.tgz", "pairs.txt")}
    yield base, md5
    server.shutdown()


def test_fetch_checks_and_installs(settings, tmp_path, served):
    base, md5 = served
    sources = {"images": Source(f"{base}/lfw.tgz", md5["lfw.tgz"]), "pairs.txt": Source(f"{base}/pairs.txt", md5["pairs.txt"])}
    s = settings.replace(cache_dir=tmp_path / "cache", data=None)
    seen = []
    lfw = fetch_lfw(s, sources=sources, progress=lambda done, total: seen.append(done))
    assert lfw.root == tmp_path / "cache" / "datasets" / "lfw"
    assert sorted(lfw.people()) == ["Ann_Example", "Bob_Example"]
    (fold,) = lfw.pairs()
    assert [p.mated for p in fold] == [True, False]
    assert seen and LFW.locate(s).root == lfw.root


def test_fetch_refuses_a_bad_checksum_and_leaves_nothing(settings, tmp_path, served):
    base, md5 = served
    sources = {"images": Source(f"{base}/lfw.tgz", "0" * 32), "pairs.txt": Source(f"{base}/pairs.txt", md5["pairs.txt"])}
    s = settings.replace(cache_dir=tmp_path / "cache", data=None)
    with pytest.raises(errors.DatasetError, match="checksum mismatch"):
        fetch_lfw(s, sources=sources)
    target = tmp_path / "cache" / "datasets"
    assert not (target / "lfw").exists()
    assert list(target.iterdir()) == []  # the staging folder is gone too


def test_fetch_reports_an_unreachable_source(settings, tmp_path):
    sources = {"images": Source("http://127.0.0.1:9/none.tgz", "0" * 32), "pairs.txt": Source("http://127.0.0.1:9/p", "0" * 32)}
    with pytest.raises(errors.DatasetError, match="could not download"):
        fetch_lfw(settings.replace(cache_dir=tmp_path, data=None), sources=sources)


def test_the_published_pairs_checksum_matches_the_real_file(lfw):
    from faceledger.evaluation.datasets import LFW_SOURCES

    assert hashlib.md5((lfw.root / "pairs.txt").read_bytes()).hexdigest() == LFW_SOURCES["pairs.txt"].md5
