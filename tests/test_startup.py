"""A one-off command's start and exit (issue 25; interfaces/cli/startup.py, models/files.py): each
command's module imported only when it runs, the collector paused while it loads, the weights'
digest kept between processes. What a user relies on stays: every command listed and reachable,
the ledger written and closed by a command run as a process, model ids that follow the weights."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import typer
from typer.testing import CliRunner

from faceledger.interfaces.cli.main import COMMANDS, app
from faceledger.models import files

runner = CliRunner()


def test_help_lists_every_command_and_each_answers_its_own_help():
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    commands = r.stdout.split("Commands", 1)[1]
    listed = re.findall(r"^│ (\S+) {2,}\S", commands, re.M)
    assert listed == list(COMMANDS), listed  # every one, in the table's order, each with its help line
    for name in COMMANDS:
        r = runner.invoke(app, [name, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.stdout, (name, r.output)


def test_no_typer_app_of_the_cli_is_left_out_of_the_table():
    """The table is the only registration: a new command group that is not in it is caught here."""
    import importlib
    import pkgutil

    import faceledger.interfaces.cli as package

    apps, nested = {}, set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for attr, value in vars(module).items():
            if isinstance(value, typer.Typer) and value is not app:
                apps[id(value)] = f"{module.__name__}:{attr}"
                nested |= {id(g.typer_instance) for g in value.registered_groups}
    registered = {id(getattr(importlib.import_module(m), a)) for m, _, a in (s.partition(":") for s in COMMANDS.values())}
    missing = sorted(where for key, where in apps.items() if key not in registered | nested)
    assert not missing, f"typer apps in no command: {missing}"


def test_an_unknown_command_gets_clicks_usage_error_and_a_suggestion():
    r = runner.invoke(app, ["colection"])
    assert r.exit_code == 2
    assert "No such command 'colection'" in r.output and "'collection'" in r.output


def _cli_modules_after(lookup: str) -> set[str]:
    probe = ("import sys, typer.main\nfrom faceledger.interfaces.cli.main import app\n"
             f"typer.main.get_command(app).commands[{lookup!r}]\n"
             "print(' '.join(m for m in sys.modules if m.startswith('faceledger.interfaces.cli.')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {m.rsplit(".", 1)[1] for m in done.stdout.split()}


def test_a_command_imports_its_own_module_not_the_others():
    base = {"main", "common", "options", "startup", "lazy"}
    assert _cli_modules_after("compare") == base
    assert _cli_modules_after("audit") == base | {"audit"}


def test_running_the_app_in_a_process_of_ones_own_leaves_its_collector_alone():
    """Only ``main`` (a command's own process) pauses and freezes the collector; a test, or a program
    that runs the app, keeps its collector as it was."""
    frozen = gc.get_freeze_count()
    r = runner.invoke(app, ["compare", "--help"])
    assert r.exit_code == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_command_run_as_a_process_writes_its_ledger_entry_and_closes_its_databases(engine, fold1, settings, tmp_path):
    """The exit skips the collector's passes over what the imports made, not the command's own
    objects: its ledger and store connections are closed as before (SQLite then folds its
    write-ahead log into the file and removes it; a connection left open leaves the -wal file)."""
    from faceledger.governance.app import ledger_of

    pair = next(p for p in fold1 if p.mated)
    engine.detect(pair.a)  # the models converted once into the session's cache, as a user's second command has them
    ledger, store = tmp_path / "ledger.sqlite", tmp_path / "store.sqlite"
    env = {**os.environ, "FACELEDGER_LEDGER": str(ledger), "FACELEDGER_STORE": str(store)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    probe = ("import atexit, json, runpy, sys\n"  # the modules the command loaded, printed as it exits
             "atexit.register(lambda: print('@@' + json.dumps(sorted(sys.modules))))\n"
             "sys.argv = ['faceledger', *sys.argv[1:]]\nrunpy.run_module('faceledger', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", probe, "compare", "--json", str(pair.a), str(pair.b)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode in (0, 1), done.stderr
    report, _, modules = done.stdout.partition("@@")
    assert "SimilarityThreshold" in json.loads(report)
    loaded = set(json.loads(modules))
    assert "numpy.ma" not in loaded  # quality.percentiles, not np.percentile's np.unique
    assert not {m for m in loaded if m.startswith("faceledger.interfaces.cli.")} - {
        f"faceledger.interfaces.cli.{m}" for m in ("main", "common", "options", "startup", "lazy", "gated")}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(("-wal", "-shm"))) == []
    entry = ledger_of(settings.replace(ledger=ledger), create=False).last("CompareFaces")
    assert entry is not None and entry.body["phase"] == "outcome" and entry.body["outcome"] == "ok", entry


# --- the weights' digest, kept between processes ----------------------------------------------------


def test_a_kept_digest_is_reused_while_the_file_is_unchanged(tmp_path, monkeypatch):
    weights = files.model_path(files.RESNET)  # installed long ago: its digest is kept
    first = files.kept_sha256(weights, tmp_path)
    hashed = []
    monkeypatch.setattr(files, "sha256_of", lambda p: hashed.append(p) or "0" * 64)
    assert files.kept_sha256(weights, tmp_path) == first and not hashed


def test_a_kept_digest_never_outlives_a_change_to_the_weights(tmp_path, monkeypatch):
    """An adversary (or an upgrade) rewrites the weights with the same size and puts the
    modification time back: the model id still follows the bytes, so templates of different
    weights are never taken for one model's."""
    monkeypatch.setattr(files, "_SETTLED_NS", 300_000_000)  # 0.3 s, not 2: the same rule, a shorter wait
    weights, cache = tmp_path / "w.dat", tmp_path / "cache"
    weights.write_bytes(b"a" * 4096)
    assert files.kept_sha256(weights, cache) == hashlib.sha256(b"a" * 4096).hexdigest()
    assert not (cache / "sha256").exists()  # just written: not kept (its times could repeat on the next write)
    time.sleep(files._SETTLED_NS / 1e9 + 0.1)
    assert files.kept_sha256(weights, cache) == hashlib.sha256(b"a" * 4096).hexdigest()
    assert len(list((cache / "sha256").iterdir())) == 1  # settled: kept
    st = weights.stat()
    weights.write_bytes(b"b" * 4096)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_mtime_ns == st.st_mtime_ns and weights.stat().st_size == st.st_size
    assert files.kept_sha256(weights, cache) == hashlib.sha256(b"b" * 4096).hexdigest()
    other = tmp_path / "other.dat"  # a file moved into its place, same size and times
    other.write_bytes(b"c" * 4096)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, weights)
    assert files.kept_sha256(weights, cache) == hashlib.sha256(b"c" * 4096).hexdigest()


def test_the_entry_points_pause_the_collector_before_the_heavy_imports():
    """The console script and `python -m faceledger` run startup.run, which pauses the collector
    before numpy, the engine and typer load: importing the package or that module loads none."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["faceledger"] == "faceledger.interfaces.cli.startup:run"
    assert "startup import run" in (root / "faceledger" / "__main__.py").read_text()
    probe = "import sys, faceledger.interfaces.cli.startup\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    loaded = set(done.stdout.split())
    assert "faceledger.interfaces.cli.startup" in loaded, done.stderr
    assert not loaded & {"numpy", "typer", "rich", "PIL", "onnxruntime", "faceledger.vision.engine"}


def test_the_packages_names_are_there_on_first_use():
    import faceledger
    from faceledger.scoring.calibrated import FaceEngine

    assert faceledger.FaceEngine is FaceEngine  # the calibrated engine, as before
    for name in faceledger.__all__:
        assert getattr(faceledger, name) is not None
    assert set(faceledger.__all__) <= set(dir(faceledger))


def test_exposure_percentiles_are_numpys_to_the_last_bit(lfw):
    """quality.percentiles replaces np.percentile (which imports numpy.ma on first use): on the
    luma of real face photos (LFW's are centred on the face), on ties, and on random values and
    percentiles, the same floats."""
    import numpy as np
    from PIL import Image

    from faceledger.vision import quality

    rng = np.random.default_rng(25)
    samples = [quality._luma(quality._inner(np.asarray(Image.open(p).convert("RGB")))) for p in lfw.images()[::1300]]
    samples += [rng.normal(100, 40, n) for n in (1, 2, 3, 99, 100, 101, 5000)]
    samples += [rng.integers(0, 4, n).astype(float) for n in (7, 1000)]  # ties
    samples += [rng.normal(100, 40, n) for n in rng.integers(2, 300, 2000)]  # NumPy's two-sided interpolation shows here
    for values in samples:
        for qs in ((1, 99), (0, 100), tuple(rng.uniform(0, 100, 3))):
            assert quality.percentiles(values, qs) == [float(x) for x in np.percentile(values, qs)], (values.shape, qs)


_BLAS_PROBE = """
import json, sys
import numpy
from faceledger.models import threads
n = threads.cores()
threads.apply(n)
skipped = "threadpoolctl" not in sys.modules
from threadpoolctl import threadpool_info
def blas():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
first = blas()
threads.apply(1)
one = blas()
threads.apply(n)
print(json.dumps({"cores": n, "skipped": skipped, "first": first, "one": one, "again": blas()}))
"""


def test_blas_is_sized_by_the_setting_without_threadpoolctl_when_it_already_is():
    """At one thread per core and no BLAS variable set, BLAS already runs that many: apply skips
    threadpoolctl (~10 ms of a one-off command). A pool once limited is always set again, and a
    variable that sets BLAS otherwise is overridden as before."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                                                            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                                                            "VECLIB_MAXIMUM_THREADS", "FACELEDGER_WORKER_PROCESSES")}
    for extra, skipped in (({}, True), ({"OMP_NUM_THREADS": "1"}, False)):
        done = subprocess.run([sys.executable, "-c", _BLAS_PROBE], capture_output=True, text=True, timeout=60,
                              env={**env, **extra})
        got = json.loads(done.stdout or "{}")
        assert got, done.stderr
        n = got["cores"]
        assert got["skipped"] is skipped, (extra, got)
        assert got["first"] and all(t == n for t in got["first"]), got
        assert all(t == 1 for t in got["one"]) and all(t == n for t in got["again"]), got
