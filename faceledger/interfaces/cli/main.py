"""The ``faceledger`` command line: a thin translation onto the engine, service and evaluation.

Exit codes are listed in cli_common.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich import box as rich_box
from rich.table import Table

from faceledger.vision import quality as quality_mod
from faceledger.interfaces.cli.common import EXIT_INPUT, EXIT_NEGATIVE, DetectorOpt, FallbackOpt, JsonOpt, box_text, err, errors, face_json, out, progress, with_progress
from faceledger.interfaces.cli import lazy, startup
from faceledger.interfaces.cli.options import member_option
from faceledger.models.registry import model_id
from faceledger.vision.engine import CompareResult, Detection, Face
from faceledger.scoring.calibrated import DEFAULT_COMPARE_FMR, DEFAULT_COMPARE_THRESHOLD
from faceledger.errors import DatasetError, FaceledgerError, InvalidParameterError
from faceledger.settings import Settings

#: Every top-level command, in the order `faceledger --help` lists them: a command function or a
#: typer app, as ``module:attribute``. A command's module is imported only when it runs (lazy.py).
COMMANDS = {
    "index": "faceledger.interfaces.cli.collections:index",
    "search": "faceledger.interfaces.cli.collections:search",
    "serve": "faceledger.interfaces.cli.server:serve",
    "detect": "faceledger.interfaces.cli.main:detect",
    "compare": "faceledger.interfaces.cli.main:compare",
    "demo": "faceledger.interfaces.cli.main:demo",
    "eval": "faceledger.interfaces.cli.main:eval_app",
    "datasets": "faceledger.interfaces.cli.main:datasets_app",
    "collection": "faceledger.interfaces.cli.collections:collection_app",
    "faces": "faceledger.interfaces.cli.collections:faces_app",
    "users": "faceledger.interfaces.cli.collections:users_app",
    "video": "faceledger.interfaces.cli.video:video_app",
    "keys": "faceledger.interfaces.cli.server:keys_app",
    "audit": "faceledger.interfaces.cli.audit:audit_app",
    "calibration": "faceledger.interfaces.cli.calibration:calibration_app",
    "models": "faceledger.interfaces.cli.models:models_app",
    "ledger": "faceledger.interfaces.cli.ledger:ledger_app",
    "review": "faceledger.interfaces.cli.ledger:review_app",
    "policy": "faceledger.interfaces.cli.ledger:policy_app",
}


def _started() -> None:
    """Runs once the command is found and imported, before its options are read."""
    startup.resume()


app = typer.Typer(cls=lazy.lazy_group(COMMANDS), callback=_started, no_args_is_help=True, add_completion=False,
                  help="Accountable, self-hosted face recognition.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure accuracy and detection rates on real datasets.")
datasets_app = typer.Typer(no_args_is_help=True, help="Find and fetch the face datasets.")


ModelOpt = typer.Option(None, "--model", help="Embedding model (`faceledger models list`); default: the configured one.")


def _gated(detector: Optional[str], fallback: Optional[str]):
    """The service behind the gate, as the local user (the CLI's principal, the policy's local roles)."""
    from faceledger.interfaces.cli.gated import _Gated

    return _Gated(settings=Settings.load(detector=detector, fallback_detector=fallback))


def _file_bytes(*paths: Path) -> list[bytes]:
    """The images' bytes for their digests in the ledger (what is not a file the engine refuses)."""
    return [p.read_bytes() for p in paths if Path(p).is_file()]


def detection_json(path: str, d: Detection) -> dict:
    return {
        "Image": path,
        "Width": d.width,
        "Height": d.height,
        "OrientationCorrection": d.orientation.name,
        "Mirrored": d.orientation.mirrored,
        "FaceDetails": [face_json(f) for f in d.faces],
    }


def compare_json(r: CompareResult, cal=None) -> dict:
    def match(m) -> dict:
        return {"Similarity": m.similarity, **({"FalseMatchRate": float(cal.fmr(m.score))} if cal else {}),
                "Face": face_json(m.face)}

    return {
        "SourceImageFace": {"BoundingBox": face_json(r.source_face)["BoundingBox"], "Confidence": r.source_face.confidence},
        "SimilarityThreshold": r.source_similarity_threshold,
        "FaceMatches": [match(m) for m in r.matches],
        "UnmatchedFaces": [match(m) for m in r.unmatched],
        "SourceImageOrientationCorrection": r.source_orientation.name,
        "TargetImageOrientationCorrection": r.target_orientation.name,
    }


def _box(face: Face) -> str:
    return box_text(face.bounding_box)


# --- commands --------------------------------------------------------------------------------------


def detect(
    images: list[Path] = typer.Argument(..., help="Image files."),
    as_json: bool = JsonOpt,
    detector: Optional[str] = DetectorOpt,
    fallback: Optional[str] = FallbackOpt,
    prealigned: bool = typer.Option(False, "--prealigned", help="Each image already is an aligned face chip."),
) -> None:
    """Find the faces in each image: box, confidence, landmarks, pose and quality."""
    with errors(as_json):
        gated = _gated(detector, fallback)
        engine = gated.gate.service.engine
        results, failed = [], []
        for path in images:
            try:
                d = gated.gate.call(gated.ctx, "DetectFaces", lambda **_: engine.detect(path, prealigned=prealigned),
                                    images=_file_bytes(path))
            except (FaceledgerError, FileNotFoundError) as exc:
                if len(images) == 1:
                    raise
                failed.append({"Image": str(path), "error": {"code": getattr(exc, "code", "FileNotFound"), "message": str(exc)}})
                continue
            results.append((str(path), d))
            if not as_json:
                _print_detection(str(path), d)
        if as_json:  # the cloud API's shapes (botocore's model) only when JSON is asked for
            print(json.dumps({"Results": [detection_json(p, d) for p, d in results], "Errors": failed}, indent=2))
        else:
            for f in failed:
                err.print(f"[red]error[/] {f['Image']}: {f['error']['message']}")
    if failed:
        raise typer.Exit(EXIT_INPUT)
    if any(not d.faces for _, d in results):
        raise typer.Exit(EXIT_NEGATIVE)


def _print_detection(path: str, d: Detection) -> None:
    title = f"{path}: {len(d.faces)} face(s), {d.width}x{d.height}"
    if d.orientation.rotation or d.orientation.mirrored:
        title += f", EXIF orientation corrected ({d.orientation.name}{', mirrored' if d.orientation.mirrored else ''})"
    # The header goes on its own unwrapped line: a long path must stay one
    # string a user can copy, whatever the terminal's width.
    out.print(title, soft_wrap=True, markup=False, highlight=False)
    if not d.faces:
        return
    # readable at 80 columns: compact cells, no vertical rules, one line per face
    table = Table(box=rich_box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, caption="box: left top width "
                  "height as ratios of the image; pose: roll/yaw/pitch in degrees; fails: the MEDIUM quality filter's "
                  "reasons", caption_justify="left")
    for col in ("#", "box", "conf", "det", "pose", "bright", "sharp", "px"):
        table.add_column(col, no_wrap=True)
    table.add_column("fails", overflow="fold")
    for i, f in enumerate(d.faces, 1):
        q = f.quality
        fails = quality_mod.reasons(q, "MEDIUM")
        b = f.bounding_box
        table.add_row(
            str(i), f"{b.left:.2f} {b.top:.2f} {b.width:.2f} {b.height:.2f}", f"{f.confidence:.1f}", f.detector,
            f"{q.pose.roll:.0f}/{q.pose.yaw:.0f}/{q.pose.pitch:.0f}", f"{q.brightness:.0f}", f"{q.sharpness:.0f}",
            f"{q.face_size:.0f}", ", ".join(fails) if fails else "-",
        )
    out.print(table)


def compare(
    source: Path = typer.Argument(..., help="Image whose largest face is compared."),
    target: Path = typer.Argument(..., help="Image whose faces are searched."),
    threshold: Optional[float] = member_option(
        "CompareFaces", "SimilarityThreshold", "--threshold",
        note=f"Default {DEFAULT_COMPARE_THRESHOLD:g}: a false match rate of {DEFAULT_COMPARE_FMR:.0e} (1 stranger in "
        f"{round(1 / DEFAULT_COMPARE_FMR):,}), as `faceledger demo` uses; the cloud API's 80 is 2.5e-6 (`faceledger "
        "calibration table`: what each keeps)."),
    max_fmr: Optional[float] = member_option("SearchFacesByImage", "MaxFalseMatchRate", "--max-fmr"),
    quality_filter: str = member_option("CompareFaces", "QualityFilter", default="NONE"),
    as_json: bool = JsonOpt,
    detector: Optional[str] = DetectorOpt,
    fallback: Optional[str] = FallbackOpt,
    model: Optional[str] = ModelOpt,
) -> None:
    """Compare the largest face of SOURCE with every face in TARGET. Exit 0 on a match, 1 on none."""
    from faceledger.scoring.calibration import similarity_of_fmr

    with errors(as_json):
        gated = _gated(detector, fallback)

        def run(**_):
            """Through the gate, as every interface: decided by the policy, written to the ledger,
            a target of many faces treated as the gallery it is."""
            bound = gated.gate.service.bound(model)
            cal = bound.scoring if bound.calibrated else None
            bar = threshold
            if max_fmr is not None:
                if cal is None:
                    raise InvalidParameterError(f"model {bound.engine.model} has no calibration: use --threshold")
                if not 0 < max_fmr <= 1:
                    raise InvalidParameterError("--max-fmr must be in (0, 1]")
                bar = max(bar or 0.0, similarity_of_fmr(max_fmr))
            bar = DEFAULT_COMPARE_THRESHOLD if bar is None else bar
            r = gated.gate.service.compare(source, target, bar, quality_filter=quality_filter, model=model)
            return r, cal, str(bound.engine.model), bar

        r, cal, model_name, threshold = gated.gate.call(gated.ctx, "CompareFaces", run, images=_file_bytes(source, target))
        if as_json:
            print(json.dumps({**compare_json(r, cal), "Model": model_name}, indent=2))
        else:
            table = Table(title=f"{source.name} vs {target.name} (threshold {threshold:.1f})", title_justify="left")
            for col in ("target face", "box (ratios)", "similarity", "false match rate", "verdict"):
                table.add_column(col)
            rows = [(m, "[green]match[/]") for m in r.matches] + [(m, "no match") for m in r.unmatched]
            for i, (m, verdict) in enumerate(rows, 1):
                table.add_row(str(i), _box(m.face), f"{m.similarity:.1f}", f"{float(cal.fmr(m.score)):.1e}" if cal else "-",
                              verdict)
            out.print(table)
            if cal is None:
                out.print(f"[yellow]model {model_name} has no calibration: similarity is 100 x cosine, no false "
                          "match rate[/]")
            if not rows:
                out.print("no face found in the target image")
            out.print("[dim]A match is a candidate for a person to check, not an identification.[/]")
    if not r.matches:
        raise typer.Exit(EXIT_NEGATIVE)


@eval_app.command("lfw")
def eval_lfw(
    pairs_per_fold: Optional[int] = typer.Option(None, "--pairs-per-fold", help="Use only this many pairs per fold (a quick run)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (default: one per core)."),
    as_json: bool = JsonOpt,
    detector: Optional[str] = DetectorOpt,
    fallback: Optional[str] = FallbackOpt,
    model: Optional[str] = ModelOpt,
) -> None:
    """LFW View 2: 10 folds, threshold fitted on nine, accuracy on the tenth."""
    from faceledger.evaluation.datasets import LFW
    from faceledger.evaluation.protocols import evaluate_lfw

    with errors(as_json):
        settings = Settings.load(detector=detector, fallback_detector=fallback, model=model)
        lfw = LFW.locate(settings)
        r = with_progress("embedding LFW images", evaluate_lfw, lfw, settings, pairs_per_fold=pairs_per_fold, workers=workers)
        if as_json:
            print(json.dumps({**asdict(r), "protocol": "LFW View 2, 10-fold", "model": str(model_id(settings))}, indent=2))
            return
        table = Table(title="LFW View 2, 10-fold", title_justify="left")
        for col in ("fold", "pairs", "threshold (cosine)", "accuracy"):
            table.add_column(col, justify="right")
        for f in r.folds:
            table.add_row(str(f.fold), str(f.pairs), f"{f.threshold:.4f}", f"{100 * f.accuracy:.2f}%")
        out.print(table)
        out.print(f"accuracy [bold]{100 * r.mean:.2f}% ± {100 * r.std:.2f}[/] (mean ± std over {len(r.folds)} folds)")
        out.print(
            f"images {r.images}; failures to acquire {len(r.failures_to_acquire)}; "
            f"found by {', '.join(f'{k} {v}' for k, v in sorted(r.detectors.items()))}; "
            f"pairs with a failure {r.pairs_with_failure}; {r.seconds:.0f} s for templates not already cached"
        )


@eval_app.command("detection")
def eval_detection(
    dataset: str = typer.Option("fairface", "--dataset", help="fairface (by annotated race group) or lfw (all 13,233 images)."),
    per_group: Optional[int] = typer.Option(None, "--per-group", help="Seeded sample of this many images per group."),
    workers: Optional[int] = typer.Option(None, "--workers"),
    as_json: bool = JsonOpt,
    detector: Optional[str] = DetectorOpt,
    fallback: Optional[str] = FallbackOpt,
) -> None:
    """How often a face is found (primary detector, then with the fallback): failures to acquire."""
    from faceledger.evaluation.datasets import LFW, FairFace
    from faceledger.evaluation.protocols import detection_rates, fairface_groups

    with errors(as_json):
        settings = Settings.load(detector=detector, fallback_detector=fallback)
        if dataset == "fairface":
            groups = fairface_groups(FairFace.locate(settings))
        elif dataset == "lfw":
            groups = {"LFW": LFW.locate(settings).images()}
        else:
            raise InvalidParameterError("--dataset must be fairface or lfw")
        rates = with_progress(f"detecting {dataset} faces", detection_rates, groups, settings, per_group=per_group, workers=workers)
        if as_json:
            print(json.dumps([asdict(r) for r in rates], indent=2))
            return
        table = Table(title=f"{dataset} detection rate ({settings.detector}, fallback {settings.fallback_detector})", title_justify="left")
        for col in ("group", "images", f"{settings.detector} alone", "with fallback"):
            table.add_column(col, justify="right")
        for r in rates + ([_total(rates)] if len(rates) > 1 else []):
            table.add_row(
                r.group, str(r.images), f"{r.primary} ({100 * r.primary / r.images:.1f}%)", f"{r.any} ({100 * r.any / r.images:.1f}%)"
            )
        out.print(table)


def _total(rates):
    from faceledger.evaluation.protocols import GroupRate

    return GroupRate("all", sum(r.images for r in rates), sum(r.primary for r in rates), sum(r.any for r in rates))


@datasets_app.command("info")
def datasets_info(as_json: bool = JsonOpt) -> None:
    """Where the datasets are, and whether they are complete."""
    from faceledger.evaluation.datasets import LFW, FairFace

    settings = Settings.load()
    info: dict[str, object] = {"data": str(settings.data) if settings.data else None, "cache_dir": str(settings.cache_dir)}
    for name, locate in (("lfw", LFW.locate), ("fairface", FairFace.locate)):
        try:
            info[name] = str(locate(settings).root)
        except DatasetError as exc:
            info[name] = f"missing: {exc}"
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            out.print(f"[bold]{k}[/]: {v}")


@datasets_app.command("fetch")
def datasets_fetch(name: str = typer.Argument(..., help="Dataset to download: lfw.")) -> None:
    """Download a public dataset into the cache, checking its published checksum."""
    from faceledger.evaluation.datasets import fetch_lfw

    with errors(False):
        if name != "lfw":
            raise InvalidParameterError("only 'lfw' can be fetched; FairFace is distributed by its authors")
        with progress() as bar:
            task = bar.add_task("downloading LFW", total=None)
            lfw = fetch_lfw(Settings.load(), progress=lambda done, total: bar.update(task, completed=done, total=total))
        out.print(f"LFW ready at {lfw.root}")


def demo() -> None:
    """A short real job on LFW: detect faces, compare a matched and a mismatched pair. Through the
    gate, as every interface: each call decided by the policy and written to the ledger."""
    from faceledger.evaluation.datasets import LFW

    with errors(False):
        settings = Settings.load()
        lfw = LFW.locate(settings)
        gated = _gated(None, None)
        engine = gated.gate.service.engine

        def compare_pair(**_):
            bound = gated.gate.service.bound(None)
            return gated.gate.service.compare(pair.a, pair.b, threshold), bound.scoring if bound.calibrated else None

        # the 1:1 default of `faceledger compare` (docs/calibration.md: what stricter rates cost)
        threshold = DEFAULT_COMPARE_THRESHOLD
        fold = lfw.pairs()[0]
        mated = next(p for p in fold if p.mated)
        nonmated = next(p for p in fold if not p.mated)
        out.rule("faceledger demo")
        out.print(f"model {gated.gate.service.model}; detector {settings.detector} (fallback {settings.fallback_detector}); "
                  f"data from {lfw.root}\n")
        out.print("[bold]1. Detect[/]: every face, with a box, a confidence, 5 landmarks, pose and quality.")
        _print_detection(_short(mated.a, lfw), gated.gate.call(gated.ctx, "DetectFaces", lambda **_: engine.detect(mated.a),
                                                               images=_file_bytes(mated.a)))
        for title, pair in (("2. Same person", mated), ("3. Different people", nonmated)):
            r, cal = gated.gate.call(gated.ctx, "CompareFaces", compare_pair, images=_file_bytes(pair.a, pair.b))
            where = f"false match rate {DEFAULT_COMPARE_FMR:.0e}, as faceledger compare" if cal else "interim scale"
            best = max(r.matches + r.unmatched, key=lambda m: m.similarity, default=None)
            sim = best.similarity if best else 0.0
            rate = f" (strangers score this high {float(cal.fmr(best.score)):.1e} of the time)" if cal and best else ""
            verdict = "[green]match[/]" if r.matches else "no match"
            out.print(f"[bold]{title}[/]: {_short(pair.a, lfw)} vs {_short(pair.b, lfw)} -> similarity {sim:.1f}{rate} "
                      f"-> {verdict} at threshold {threshold:.1f} ({where})")
            if pair.mated and not r.matches:
                out.print("   [dim]a same-person pair under the threshold: about 1 in 8 of LFW's are (`faceledger "
                          "calibration table` shows what each threshold keeps; --max-fmr 1e-2 is looser)[/]")
        out.print(
            "\nA match is a candidate for a person to review, never an identification. "
            "Try: [bold]faceledger compare A.jpg B.jpg[/], [bold]faceledger detect --json IMG[/], "
            "[bold]faceledger eval lfw[/]."
        )


def _short(path: Path, lfw: LFW) -> str:
    return str(path.relative_to(lfw.root))


def main() -> None:
    startup.pause()
    try:
        app()  # click's standalone mode: ends in SystemExit
    except SystemExit as done:
        code = done.code
    else:
        code = None
    # only now, with the exception's traceback (and the command's frames) let go, can the
    # command's objects be collected: its database connections closed as before
    startup.finish()
    sys.exit(code)


if __name__ == "__main__":  # `python -m faceledger.interfaces.cli.main`: the module's own app, which COMMANDS names
    from faceledger.interfaces.cli.main import main as _main

    _main()
