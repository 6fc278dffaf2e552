"""A new user's first hour (issue 21): each check is something that was hit when tried as a new
user would, and must stay fixed."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from faceledger import FaceEngine, errors
from faceledger.interfaces.cli import collections as cli_collections
from faceledger.interfaces.cli.common import EXIT_ENVIRONMENT, EXIT_INPUT, EXIT_INTERRUPTED
from faceledger.interfaces.cli.main import app
from faceledger.settings import Settings

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def test_a_folder_where_an_image_is_expected_is_a_typed_error(tmp_path, engine):
    r = runner.invoke(app, ["detect", "--json", str(tmp_path)])
    assert r.exit_code == EXIT_INPUT
    e = json.loads(r.stdout)["error"]
    assert e["code"] == "InvalidParameterException" and "is a folder" in e["message"]
    r = runner.invoke(app, ["compare", str(tmp_path), str(tmp_path)])
    assert r.exit_code == EXIT_INPUT and "is a folder" in r.stderr and "Traceback" not in r.output
    with pytest.raises(errors.ImageIsAFolderError):
        engine.detect(tmp_path)


@pytest.fixture
def photos(tmp_path, lfw):
    """A folder of sub-folders only: two photos of one person and a blank image."""
    sub = tmp_path / "photos" / "people"
    sub.mkdir(parents=True)
    for k in (1, 2):
        (sub / f"colin{k}.jpg").write_bytes(lfw.image("Colin_Powell", k).read_bytes())
    Image.new("RGB", (200, 200), (128, 128, 128)).save(sub / "blank.png")
    return tmp_path / "photos"


def _collection(name: str) -> None:
    r = runner.invoke(app, ["collection", "create", name])
    assert r.exit_code == 0, r.output


def test_index_says_what_it_did_not_index_and_why(photos):
    _collection("first-hour")
    r = runner.invoke(app, ["index", "first-hour", str(photos)])  # no -r: the images are one level down
    assert r.exit_code == EXIT_INPUT and "add -r" in r.stderr
    r = runner.invoke(app, ["index", "first-hour", str(photos), "-r", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.splitlines()[-1])["Summary"]
    assert summary["Images"] == 3 and summary["FacesIndexed"] == 2
    (skipped,) = summary["NotIndexed"]
    assert skipped["Image"].endswith("blank.png") and skipped["Reasons"] == ["NO_FACE"]
    r = runner.invoke(app, ["index", "first-hour", str(photos), "-r"])
    assert "blank.png: no face found" in " ".join(r.stdout.split())


def test_ctrl_c_exits_130_with_the_true_counts(photos, monkeypatch):
    _collection("interrupted")
    real = cli_collections.parallel_map

    def interrupted_after_one(*args, **kwargs):
        results = real(*args, **kwargs)
        yield next(iter(results))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_collections, "parallel_map", interrupted_after_one)
    r = runner.invoke(app, ["index", "interrupted", str(photos), "-r", "--json"])
    assert r.exit_code == EXIT_INTERRUPTED
    summary = json.loads(r.stdout.splitlines()[-1])["Summary"]
    assert summary["Interrupted"] and summary["Images"] == 1 and summary["ImagesFound"] == 3


def test_tables_keep_whole_ids_and_fit_80_columns(photos, lfw):
    _collection("tables")
    runner.invoke(app, ["index", "tables", str(photos), "-r"])
    listed = json.loads(runner.invoke(app, ["faces", "list", "tables", "--json"]).stdout)
    ids = [f["FaceId"] for f in listed["Faces"]]
    r = runner.invoke(app, ["faces", "list", "tables"], terminal_width=80)
    assert all(face_id in r.stdout for face_id in ids), r.stdout  # whole, on one line, copyable
    r = runner.invoke(app, ["search", "tables", str(lfw.image("Colin_Powell", 3)), "--purpose", "access-control",
                            "--threshold", "0"], terminal_width=80)
    assert r.exit_code == 0, r.output
    assert any(face_id in r.stdout for face_id in ids), r.stdout
    r = runner.invoke(app, ["detect", str(lfw.image("Colin_Powell", 1))], terminal_width=80)
    lines = r.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines[1:])
    (row,) = [line for line in lines if line.strip().startswith("1 ")]  # one face: one line, nothing cut
    assert "blazeface" in row and "…" not in row  # the default detector's name, whole


def test_one_home_holds_all_state(tmp_path, monkeypatch):
    for name in ("STORE", "KEYS_FILE", "LEDGER", "LEDGER_KEY", "CACHE_DIR", "MODELS_DIR", "CONFIG"):
        monkeypatch.delenv(f"FACELEDGER_{name}", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("FACELEDGER_HOME", str(home))
    (home).mkdir()
    (home / "config.toml").write_text('detect_max_side = 800\n')
    s = Settings.load()
    assert s.detect_max_side == 800  # the config file is read from the home too
    for path in (s.store, s.keys_file, s.ledger, s.ledger_key, s.cache_dir, s.models_dir):
        assert home in path.parents, path
    assert runner.invoke(app, ["keys", "create", "--purpose", "access-control"]).exit_code == 0
    assert runner.invoke(app, ["collection", "create", "at-home"]).exit_code == 0
    assert runner.invoke(app, ["ledger", "keygen"]).exit_code == 0
    made = {p.name for p in home.iterdir()}
    assert {"keys.json", "store.sqlite", "ledger.sqlite", "ledger-key.pem"} <= made, made


def test_configuration_doc_lists_every_setting():
    doc = (REPO / "docs" / "configuration.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings)
               if f"| `{f.name}` | `FACELEDGER_{f.name.upper()}` |" not in doc]
    assert not missing and "FACELEDGER_HOME" in doc


def test_missing_data_is_not_an_internal_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELEDGER_DATA", str(tmp_path))
    monkeypatch.setenv("FACELEDGER_CACHE_DIR", str(tmp_path / "cache"))
    r = runner.invoke(app, ["eval", "lfw", "--json"])
    assert r.exit_code == EXIT_ENVIRONMENT
    assert json.loads(r.stdout)["error"]["code"] == "DatasetUnavailableException"
    assert errors.DownloadFailedError("x").code == "DownloadFailedException"
    assert errors.ModelFileError("x").code != "InternalServerError"


def test_audit_images_prints_markdown_only(tmp_path, lfw):
    people = lfw.people()
    chosen = [n for n in sorted(people) if len(people[n]) >= 2][:3]
    manifest = tmp_path / "faces.csv"
    manifest.write_text("path,group,subject\n" + "\n".join(
        f"{p},{'odd' if k % 2 else 'even'},{name}" for k, name in enumerate(chosen) for p in people[name][:2]) + "\n")
    r = runner.invoke(app, ["audit", "images", "--dataset", str(manifest), "--target-fmr", "0.1", "--resamples", "0"])
    assert r.exit_code == 0, r.output
    for line in r.stdout.splitlines():
        assert not line.lstrip().startswith(("{", "[")), f"a JSON line in the Markdown: {line}"
    assert "- images:" in r.stdout and "|" in r.stdout


def test_readme_stays_inside_the_repository_and_under_the_default_policy():
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", readme):
        assert not target.startswith(("..", "/", "http")), target
    assert "../shared/DESIGN.md" not in readme
    assert "faceledger keys create --purpose access-control" in readme  # the key the boto3 snippet needs
    assert re.search(r"make test.*\d+ minutes", readme), "the README says how long make test takes"
    makefile = (REPO / "Makefile").read_text()
    demo_stamp = re.search(r"^demo: (\S+)", makefile, re.M).group(1)
    assert "[test]" not in re.search(rf"^{re.escape(demo_stamp)}:.*?(?=^\S)", makefile, re.M | re.S).group(0)


def test_readme_shell_examples_run_verbatim(tmp_path, monkeypatch, lfw):
    """The README's shell lines, as written, under the default policy (files named there made from
    LFW images; the long evaluations, the audits and `serve` are run by their own tests)."""
    import shlex

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACELEDGER_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("FACELEDGER_LEDGER", str(tmp_path / "ledger.sqlite"))
    monkeypatch.setenv("FACELEDGER_KEYS_FILE", str(tmp_path / "keys.json"))
    for name, (person, k) in {"photo.jpg": ("Colin_Powell", 1), "a.jpg": ("Colin_Powell", 1),
                              "b.jpg": ("Colin_Powell", 2), "id_photo.jpg": ("Tony_Blair", 1),
                              "group.jpg": ("Tony_Blair", 2), "probe.jpg": ("Colin_Powell", 3)}.items():
        (tmp_path / name).write_bytes(lfw.image(person, k).read_bytes())
    Image.open(lfw.image("Colin_Powell", 2)).save(tmp_path / "b.png")
    from tests.video_media import Appearance, write_video  # a short lobby video: Colin Powell walks by

    write_video(tmp_path / "lobby.mp4", [Appearance("colin", lfw.image("Colin_Powell", 4), 0.2, 1.8, (0.3, 0.5), (0.7, 0.5),
                                                    (110, 120))], width=320, height=240, duration=2.0)
    (tmp_path / "photos" / "colin").mkdir(parents=True)
    for k in (1, 2, 4):
        (tmp_path / "photos" / "colin" / f"colin{k}.jpg").write_bytes(lfw.image("Colin_Powell", k).read_bytes())
    block = re.search(r"```sh\nfaceledger detect photo.jpg.*?```", (REPO / "README.md").read_text(), re.S).group(0)
    skip = ("faceledger eval", "faceledger audit", "faceledger serve", "faceledger calibration table")
    ran, entry = [], None
    for line in block.splitlines()[1:-1]:
        for command in line.split("#")[0].split(" ; "):
            command = command.strip()
            if not command or command.startswith(skip):
                continue
            if "FACE_ID" in command:
                ids = [f["FaceId"] for f in json.loads(runner.invoke(app, ["faces", "list", "staff", "--json"]).stdout)["Faces"]]
                command = command.replace("FACE_ID...", " ".join(ids[:-1])).replace("FACE_ID", ids[-1])
            if "ENTRY" in command:
                command = command.replace("ENTRY", str(entry))
            r = runner.invoke(app, shlex.split(command)[1:])
            if command.startswith("faceledger review decide"):  # the README says: a reviewer, not the searcher
                assert r.exit_code == EXIT_INPUT and "separation of duties" in r.output, r.output
                ran.append("review")
                continue
            assert r.exit_code in (0, 1), f"{command}: exit {r.exit_code}\n{r.output}"  # 1: a negative answer
            found = re.search(r"Ledger entry (\d+)", " ".join(r.stdout.split()))
            entry = int(found.group(1)) if found else entry
            ran.append(command.split()[1])
    assert {"detect", "compare", "collection", "index", "search", "review", "ledger", "faces", "users", "keys", "video"} <= set(ran)
