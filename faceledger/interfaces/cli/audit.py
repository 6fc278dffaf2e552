"""`faceledger audit`: per-group error rates of any system's scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from faceledger.evaluation.audit import audit, markdown, read_scores
from faceledger.evaluation.audit_report import render_html
from faceledger.interfaces.cli.common import JsonOpt, RayOpt, errors, pool
from faceledger.errors import InvalidParameterError

audit_app = typer.Typer(no_args_is_help=True, help="Demographic audit: per-group error rates with intervals.")


def _emit(report, title: str, as_json: bool, markdown_out, html_out, json_out, extra: dict | None = None) -> None:
    data = {**(extra or {}), **report.to_dict()}
    _write(markdown(report), json.dumps(_finite(data), indent=2), lambda: render_html(report, title), as_json,
           markdown_out, html_out, json_out, extra)


def _write(summary: str, document: str, page, as_json: bool, markdown_out, html_out, json_out, extra) -> None:
    """The Markdown, HTML (``page()``, rendered only when asked) and JSON where asked; JSON or Markdown printed."""
    if markdown_out:
        markdown_out.write_text(summary)
    if html_out:
        html_out.write_text(page())
    if json_out:
        json_out.write_text(document)
    if as_json:
        print(document)
    else:  # plain print: Markdown tables must not be wrapped to the terminal's width
        if extra:
            print(json.dumps(extra))
        print(summary)


MarkdownOpt = typer.Option(None, "--markdown", help="Also write the Markdown summary here.")
HtmlOpt = typer.Option(None, "--html", help="Also write the self-contained HTML report here.")
JsonOutOpt = typer.Option(None, "--json-out", help="Also write the JSON with every number here.")
TargetsOpt = typer.Option([1e-3, 1e-4], "--target-fmr", help="Global thresholds set for these FMRs.")
ReferenceOpt = typer.Option(None, "--reference-group", help="Also set thresholds on this group.")
ResamplesOpt = typer.Option(200, "--resamples", help="Subject-level bootstrap resamples (0: none).")
IntervalOpt = typer.Option("wilson", "--interval", help="95% interval per rate: wilson or clopper-pearson (exact).")


@audit_app.command("images")
def audit_images(
    dataset: str = typer.Option(..., "--dataset", help="fairface (race x gender, all pairs), lfw, or a manifest CSV "
                                "(path, group, optional subject)."),
    by: str = typer.Option("gender", "--by", help="LFW groups: gender (per image) or race (per person, 866 labelled)."),
    per_group: Optional[int] = typer.Option(None, "--per-group", help="FairFace: seeded sample of images per group."),
    people: Optional[int] = typer.Option(None, "--people", help="LFW: seeded sample of people."),
    nonmated: Optional[int] = typer.Option(None, "--nonmated", help="Non-mated pairs sampled; 0: every pair. Default: "
                                           "2,000,000 for LFW by gender, every pair otherwise."),
    prealigned: bool = typer.Option(False, "--prealigned", help="Manifest: the images are dlib face chips (padding 0.25)."),
    target_fmr: list[float] = TargetsOpt,
    reference_group: Optional[str] = ReferenceOpt,
    resamples: int = ResamplesOpt,
    interval: str = IntervalOpt,
    workers: Optional[int] = typer.Option(None, "--workers"),
    ray: Optional[str] = RayOpt,
    plain_only: bool = typer.Option(False, "--plain-only", help="Audit the plain cosine scores only (by default "
                                    "the cohort-normalised scores too, side by side, when the model has them)."),
    markdown_out: Optional[Path] = MarkdownOpt,
    html_out: Optional[Path] = HtmlOpt,
    json_out: Optional[Path] = JsonOutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Audit this engine on a labelled dataset: templates (cached), pairs, per-group rates; for
    both scorings (plain cosines, and cohort-normalised scores) side by side."""
    from faceledger.evaluation.audit_images import fairface_scores, lfw_scores, manifest_scores
    from faceledger.interfaces.cli.common import with_progress
    from faceledger.settings import Settings

    with errors(as_json):
        settings = Settings.load()
        scorings = _scorings(settings, plain_only)
        normaliser = scorings["cohort-normalised"].normaliser if "cohort-normalised" in scorings else None
        if nonmated is not None and nonmated < 0:
            raise InvalidParameterError("--nonmated must be 0 (every pair) or a positive count")
        sample = None if nonmated == 0 else nonmated
        workers = pool(workers, ray)
        if dataset == "fairface":
            made = with_progress("FairFace templates", fairface_scores, settings, per_group=per_group, workers=workers,
                                 normaliser=normaliser)
        elif dataset == "lfw":
            if nonmated is None:
                sample = 2_000_000 if by == "gender" else None
            made = with_progress("LFW templates", lfw_scores, settings, by=by, people=people, nonmated=sample,
                                 workers=workers, normaliser=normaliser)
        elif dataset.lower().endswith(".csv"):
            made = with_progress("templates", manifest_scores, settings, Path(dataset), prealigned=prealigned,
                                 nonmated=sample, workers=workers, normaliser=normaliser)
        else:
            raise InvalidParameterError("--dataset must be fairface, lfw or a manifest .csv file")
        scores = {"cosine": made.scores, "cohort-normalised": made.normalised}
        reports = {name: audit(scores[name], targets=target_fmr, reference_group=reference_group, resamples=resamples,
                               interval=interval, calibration=sc.calibration) for name, sc in scorings.items()}
        if dataset == "lfw":
            dataset = f"lfw by {by}"
        extra = {"dataset": dataset, "images": made.images, "failures_to_acquire": made.failures_to_acquire,
                 "score": "cosine of this engine's templates", "default_scoring": _DEFAULT[settings.score_normalisation]}
        title = f"Demographic audit of this engine on {dataset}"
        if len(reports) == 1:
            _emit(reports["cosine"], title, as_json, markdown_out, html_out, json_out, extra)
        else:
            _emit_side_by_side(reports, title, as_json, markdown_out, html_out, json_out, extra)


_DEFAULT = {"none": "cosine", "cohort": "cohort-normalised"}
_SIDE_NOTE = ("The same comparisons scored two ways: the plain cosine of two templates, and the cosine normalised "
              "against a cohort of centroids (score_normalisation = cohort; docs/fairness.md). Each scoring's own "
              "calibration states a false match rate; the tables show whether it holds for every group.")


def _scorings(settings, plain_only: bool) -> dict:
    """The scorings to audit: the plain one, and the normalised one where its files ship."""
    from faceledger.scoring.calibration import CalibrationMissingError
    from faceledger.models.embedding import DlibResnetEmbedder
    from faceledger.scoring.scoring import Scoring

    model = str(DlibResnetEmbedder.model_id(settings.embed_flip))
    out = {"cosine": Scoring.of(model, "none")}
    if not plain_only:
        try:
            out["cohort-normalised"] = Scoring.of(model, "cohort")
        except CalibrationMissingError:  # NormaliserMissingError is one too: audit the plain scores alone
            pass
    return out


def _emit_side_by_side(reports: dict, title: str, as_json: bool, markdown_out, html_out, json_out, extra: dict) -> None:
    from faceledger.evaluation.audit_compare import side_by_side_markdown
    from faceledger.evaluation.audit_report import render_html_side_by_side

    summary = side_by_side_markdown(reports, _SIDE_NOTE) + "\n" + "\n".join(
        f"# Scores: {name}\n\n{markdown(r)}" for name, r in reports.items())
    # the cosine report at the top level, as without normalisation; the other scorings beside it
    document = json.dumps(_finite({**extra, **reports["cosine"].to_dict(),
                                   "scorings": {n: r.to_dict() for n, r in reports.items() if n != "cosine"}}), indent=2)
    _write(summary, document, lambda: render_html_side_by_side(reports, title, _SIDE_NOTE), as_json, markdown_out,
           html_out, json_out, extra)


@audit_app.command("scores")
def audit_scores(
    path: Path = typer.Argument(..., help="CSV or Parquet: score, mated, group (or group_a, group_b), optional "
                                "subject_a, subject_b."),
    direction: str = typer.Option("similarity", "--direction", help="similarity (higher = alike) or distance."),
    target_fmr: list[float] = TargetsOpt,
    reference_group: Optional[str] = ReferenceOpt,
    resamples: int = ResamplesOpt,
    interval: str = IntervalOpt,
    markdown_out: Optional[Path] = MarkdownOpt,
    html_out: Optional[Path] = HtmlOpt,
    json_out: Optional[Path] = JsonOutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Audit a score file from any system: FMR and FNMR per group at shared thresholds."""
    with errors(as_json):
        report = audit(read_scores(path, direction=direction), targets=target_fmr, reference_group=reference_group,
                       resamples=resamples, interval=interval)
        _emit(report, f"Demographic audit of {path.name}", as_json, markdown_out, html_out, json_out)


def _finite(value):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
