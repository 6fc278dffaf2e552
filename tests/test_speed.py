"""What makes faceledger fast where a user waits (issue 25): `compare` and `detect` load only what
they use and still pass the gate; one thread setting sizes every pool; detection of a large image
runs on a small copy, with a pyramid so a face too small for the copy is still found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceledger import FaceEngine, Settings
from faceledger.models import threads

#: Modules a 1:1 comparison never needs: the cloud API's model (botocore), the ANN index (faiss),
#: the HTTP stack, the TF.js converter (onnx) and the dataset/audit layer.
HEAVY = ("botocore", "faiss", "fastapi", "starlette", "uvicorn", "onnx", "pandas", "scipy")

_PROBE = """
import json, runpy, sys
sys.argv = ["faceledger", *sys.argv[1:]]
try:
    runpy.run_module("faceledger", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("@@" + json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@pytest.fixture(scope="module")
def converted(engine, lfw):
    """The engine's models converted once into the cache (a first run's one-time cost), as a user
    has them from the second command on."""
    engine.detect(lfw.image("Aaron_Eckhart", 1))
    return engine


def _run_cli(*args: str, env: dict | None = None) -> tuple[int, set[str], str]:
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})})
    line = next(x for x in p.stdout.splitlines() if x.startswith("@@"))
    found = json.loads(line[2:])
    return found["code"], set(found["modules"]), p.stdout + p.stderr


def _big(path: Path, folder: Path, side: int = 1000) -> Path:
    """A 1-megapixel copy of a real LFW photo (as a phone photo would be)."""
    target = folder / f"{path.stem}-{side}.jpg"
    Image.open(path).resize((side, side), Image.BICUBIC).save(target, quality=92)
    return target


def test_compare_loads_only_what_it_uses_and_still_passes_the_gate(converted, lfw, tmp_path, settings):
    from faceledger.governance.app import ledger_of

    a, b = _big(lfw.image("Aaron_Eckhart", 1), tmp_path), _big(lfw.image("Aaron_Eckhart", 1), tmp_path, 900)
    before = ledger_of(settings).last("CompareFaces")
    code, modules, output = _run_cli("compare", str(a), str(b))
    assert code in (0, None), output
    assert not modules & set(HEAVY), f"`faceledger compare` imported {sorted(modules & set(HEAVY))}"
    # the gate was passed: the comparison is in the ledger, decided by the policy (a comparison
    # that skipped the gate to save its imports would leave no entry)
    last = ledger_of(settings).last("CompareFaces")
    assert last is not None and (before is None or last.seq > before.seq)


def test_detect_loads_only_what_it_uses(converted, face_path):
    code, modules, output = _run_cli("detect", str(face_path))
    assert code in (0, None), output
    assert not modules & set(HEAVY), f"`faceledger detect` imported {sorted(modules & set(HEAVY))}"


# --- threads ---------------------------------------------------------------------------------------


def test_threads_default_to_cores_per_worker_process(monkeypatch):
    monkeypatch.delenv(threads.WORKERS_ENV, raising=False)
    assert threads.resolve(3) == 3
    assert threads.resolve(0) == threads.cores()
    assert threads.resolve(0, workers=threads.cores() * 4) == 1  # never 0
    monkeypatch.setenv(threads.WORKERS_ENV, "2")  # what `serve --workers 2` tells its workers
    assert threads.resolve(0) == max(1, threads.cores() // 2)


def test_one_thread_setting_sizes_onnx_runtime_faiss_and_blas(settings):
    from threadpoolctl import threadpool_info

    engine = FaceEngine(settings.replace(threads=1))
    try:
        assert engine.threads == 1
        assert engine._embedder._session.get_session_options().intra_op_num_threads == 1
        assert threads.faiss_module().omp_get_max_threads() == 1
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
    finally:
        threads.apply(threads.resolve(settings.threads))


def test_the_former_setting_name_is_still_read(monkeypatch):
    monkeypatch.setenv("FACELEDGER_ONNX_THREADS", "3")
    assert Settings.load().threads == 3
    assert Settings.from_mapping({"onnx_threads": 2}).threads == 2
