"""`faceledger audit`: per-group error rates of any system's scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from faceledger.interfaces.cli.common import JsonOpt, RayOpt, errors, pool
from faceledger.errors import InvalidParameterError


# The audit layer is imported when an audit runs: every command loads this module (to list it), and
# `faceledger compare` and `detect` never audit (issue 25: start-up).
def audit(*args, **kwargs):
    from faceledger.evaluation.audit import audit as run

    return run(*args, **kwargs)


def markdown(*args, **kwargs):
    from faceledger.evaluation.audit import markdown as run

    return run(*args, **kwargs)


def read_scores(*args, **kwargs):
    from faceledger.evaluation.audit import read_scores as run

    return run(*args, **kwargs)


def render_html(*args, **kwargs):
    from faceledger.evaluation.audit_report import render_html as run

    return run(*args, **kwargs)


audit_app = typer.Typer(no_args_is_help=True, help="Demographic audit: per-group error rates with intervals.")


def _emit(report, title: str, as_json: bool, markdown_out, html_out, json_out, extra: dict | None = None,
          pdf_out=None) -> None:
    data = {**(extra or {}), **report.to_dict()}
    _write(markdown(report), json.dumps(_finite(data), indent=2), lambda: render_html(report, title), as_json,
           markdown_out, html_out, json_out, extra, pdf_out)


def _write(summary: str, document: str, page, as_json: bool, markdown_out, html_out, json_out, extra,
           pdf_out=None) -> None:
    """The Markdown, HTML (``page()``, rendered only when asked), PDF (that page printed by headless
    Chromium) and JSON where asked; JSON or Markdown printed."""
    if markdown_out:
        markdown_out.write_text(summary)
    if html_out or pdf_out:
        text = page()
        if html_out:
            html_out.write_text(text)
        if pdf_out:
            from faceledger.evaluation.report_pdf import html_to_pdf

            html_to_pdf(text, pdf_out)
    if json_out:
        json_out.write_text(document)
    if as_json:
        print(document)
    else:  # plain print: Markdown tables must not be wrapped to the terminal's width
        if extra:
            print(markdown_facts(extra))
        print(summary)


def markdown_facts(facts: dict, depth: int = 0) -> str:
    """What the run was (dataset, images, failures to acquire, scoring, models) as a Markdown list,
    so that the printed report is Markdown from its first line (the JSON is under --json)."""
    lines = []
    for key, value in facts.items():
        label = str(key).replace("_", " ")
        if isinstance(value, dict):
            lines.append(f"{'  ' * depth}- {label}:")
            lines.append(markdown_facts(value, depth + 1))
        else:
            lines.append(f"{'  ' * depth}- {label}: {value}")
    return "\n".join(lines) + ("\n" if depth == 0 else "")


MarkdownOpt = typer.Option(None, "--markdown", help="Also write the Markdown summary here.")
HtmlOpt = typer.Option(None, "--html", help="Also write the self-contained HTML report here.")
JsonOutOpt = typer.Option(None, "--json-out", help="Also write the JSON with every number here.")
PdfOpt = typer.Option(None, "--pdf", help="Also print the HTML report to this PDF file (needs headless Chromium).")
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
    models: list[str] = typer.Option([], "--model", help="Audit this model (`faceledger models list`); repeat to "
                                     "audit several side by side on the same images and pairs. Default: the "
                                     "configured model."),
    markdown_out: Optional[Path] = MarkdownOpt,
    html_out: Optional[Path] = HtmlOpt,
    json_out: Optional[Path] = JsonOutOpt,
    pdf_out: Optional[Path] = PdfOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Audit this engine on a labelled dataset: templates (cached), pairs, per-group rates; for
    both scorings (plain cosines, and cohort-normalised scores) side by side."""
    from faceledger.evaluation.audit_images import fairface_scores, lfw_scores, manifest_scores
    from faceledger.interfaces.cli.common import with_progress
    from faceledger.settings import Settings

    with errors(as_json):
        base = Settings.load()
        if nonmated is not None and nonmated < 0:
            raise InvalidParameterError("--nonmated must be 0 (every pair) or a positive count")
        if dataset not in ("fairface", "lfw") and not dataset.lower().endswith(".csv"):
            raise InvalidParameterError("--dataset must be fairface, lfw or a manifest .csv file")
        if len(set(models)) != len(models):
            raise InvalidParameterError("each --model once")
        workers = pool(workers, ray)
        reports, extra = {}, {}
        for name in models or [None]:
            settings = base if name is None else base.replace(model=name)
            scorings = _scorings(settings, plain_only)
            normaliser = scorings["cohort-normalised"].normaliser if "cohort-normalised" in scorings else None
            sample = None if nonmated == 0 else nonmated
            label = "" if name is None else f"{name} "
            if dataset == "fairface":
                made = with_progress(f"{label}FairFace templates", fairface_scores, settings, per_group=per_group,
                                     workers=workers, normaliser=normaliser)
            elif dataset == "lfw":
                if nonmated is None:
                    sample = 2_000_000 if by == "gender" else None
                made = with_progress(f"{label}LFW templates", lfw_scores, settings, by=by, people=people,
                                     nonmated=sample, workers=workers, normaliser=normaliser)
            else:
                made = with_progress(f"{label}templates", manifest_scores, settings, Path(dataset), prealigned=prealigned,
                                     nonmated=sample, workers=workers, normaliser=normaliser)
            scores = {"cosine": made.scores, "cohort-normalised": made.normalised}
            for scoring, sc in scorings.items():
                reports[label + scoring] = audit(scores[scoring], targets=target_fmr, reference_group=reference_group,
                                                 resamples=resamples, interval=interval, calibration=sc.calibration)
            about = {"images": made.images, "failures_to_acquire": made.failures_to_acquire,
                     "score": "cosine of this engine's templates",
                     "default_scoring": _DEFAULT[settings.score_normalisation]}
            if name is None:
                extra.update(about)
            else:
                extra.setdefault("models", {})[name] = {"model": str(_model_id(settings)), **about}
        shown = f"lfw by {by}" if dataset == "lfw" else dataset
        extra = {"dataset": shown, **extra}
        title = f"Demographic audit of this engine on {shown}" + (f": {' vs '.join(models)}" if len(models) > 1 else "")
        if len(reports) == 1:
            _emit(next(iter(reports.values())), title, as_json, markdown_out, html_out, json_out, extra, pdf_out)
        else:
            _emit_side_by_side(reports, title, as_json, markdown_out, html_out, json_out, extra,
                               _SIDE_NOTE if len(models) < 2 else _MODELS_NOTE, pdf_out=pdf_out)


def _model_id(settings):
    from faceledger.models.registry import model_id

    return model_id(settings)


_DEFAULT = {"none": "cosine", "cohort": "cohort-normalised"}
_SIDE_NOTE = ("The same comparisons scored two ways: the plain cosine of two templates, and the cosine normalised "
              "against a cohort of centroids (score_normalisation = cohort; docs/fairness.md). Each scoring's own "
              "calibration states a false match rate; the tables show whether it holds for every group.")
_MODELS_NOTE = ("The same images and pairs, each model's templates, each scored as its own calibration says (plain "
                "cosines, and cohort-normalised scores where the model has a normaliser): whether each model's stated "
                "false match rate holds for every group, and which model errs less, and more evenly.")


def _scorings(settings, plain_only: bool) -> dict:
    """The scorings to audit: the plain one, and the normalised one where its files ship."""
    from faceledger.scoring.calibration import CalibrationMissingError
    from faceledger.models.registry import model_id
    from faceledger.scoring.scoring import Scoring

    model = model_id(settings)
    folder = settings.models_dir / model.name
    try:
        out = {"cosine": Scoring.of(str(model), "none", folder)}
    except CalibrationMissingError:  # an uncalibrated model: rates are measured, none is stated
        out = {"cosine": Scoring("none", None)}
    if not plain_only:
        try:
            out["cohort-normalised"] = Scoring.of(str(model), "cohort", folder)
        except CalibrationMissingError:  # NormaliserMissingError is one too: audit the plain scores alone
            pass
    return out


def _emit_side_by_side(reports: dict, title: str, as_json: bool, markdown_out, html_out, json_out, extra: dict,
                       note: str = _SIDE_NOTE, *, pdf_out=None, abouts: dict | None = None) -> None:
    from faceledger.evaluation.audit_compare import side_by_side_markdown
    from faceledger.evaluation.audit_report import render_html_side_by_side

    summary = side_by_side_markdown(reports, note) + "\n" + "\n".join(
        f"# Scores: {name}\n\n{markdown(r)}" for name, r in reports.items())
    # the first report at the top level (one model: its cosine, as without normalisation); the others beside it
    first = next(iter(reports))
    document = json.dumps(_finite({**extra, **reports[first].to_dict(),
                                   "scorings": {n: r.to_dict() for n, r in reports.items() if n != first}}), indent=2)
    _write(summary, document, lambda: render_html_side_by_side(reports, title, note, abouts), as_json, markdown_out,
           html_out, json_out, extra, pdf_out)


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
    pdf_out: Optional[Path] = PdfOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Audit a score file from any system: FMR and FNMR per group at shared thresholds."""
    with errors(as_json):
        report = audit(read_scores(path, direction=direction), targets=target_fmr, reference_group=reference_group,
                       resamples=resamples, interval=interval)
        _emit(report, f"Demographic audit of {path.name}", as_json, markdown_out, html_out, json_out, pdf_out=pdf_out)


def _finite(value):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@audit_app.command("endpoint")
def audit_endpoint(
    dataset: str = typer.Option(..., "--dataset", help="lfw, fairface, or a manifest CSV (path, group, subject)."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="A Rekognition-compatible endpoint; "
                                               "absent: Amazon's, with your usual AWS credentials and region."),
    region: Optional[str] = typer.Option(None, "--region", help="AWS region (default: your configured one)."),
    protocol: str = typer.Option("verification", "--protocol", help="verification (CompareFaces on pairs) or "
                                 "identification (a gallery collection searched by probes, the ACLU design)."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the score file, every response, the journal and reports."),
    by: str = typer.Option("gender", "--by", help="LFW groups: gender or race."),
    people: Optional[int] = typer.Option(None, "--people", help="LFW: seeded sample of people."),
    per_group: Optional[int] = typer.Option(None, "--per-group", help="FairFace: seeded sample of images per group."),
    nonmated: int = typer.Option(2000, "--nonmated", help="Verification: non-mated pairs sampled."),
    mated: Optional[int] = typer.Option(None, "--mated", help="Verification: mated pairs sampled (default: all)."),
    gallery: int = typer.Option(1000, "--gallery", help="Identification: people in the gallery."),
    probes: int = typer.Option(200, "--probes", help="Identification: probes, half of people in the gallery."),
    thresholds: list[float] = typer.Option([80.0, 99.0], "--threshold", help="The endpoint's own operating points "
                                           "(its Similarity; 80 is Rekognition's default, 99 its advice for police)."),
    headers: list[str] = typer.Option([], "--header", help="NAME=VALUE added to every request before signing "
                                      "(e.g. X-Faceledger-Purpose=research-audit, X-Faceledger-Case=AUDIT-1)."),
    concurrency: int = typer.Option(4, "--concurrency", help="Calls in flight at once."),
    rate: Optional[float] = typer.Option(None, "--rate", help="At most this many calls started per second."),
    attempts: int = typer.Option(4, "--attempts", help="botocore's standard-mode attempts per round."),
    rounds: int = typer.Option(6, "--rounds", help="Rounds of retries with backoff after botocore's give up."),
    journal_path: Optional[Path] = typer.Option(None, "--journal", help="The resumable journal (default: journal.sqlite "
                                                "in --out)."),
    price_table: Optional[Path] = typer.Option(None, "--price-table", help="JSON {operation: US$ per call} "
                                               "overriding the built-in Rekognition prices."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before sending the calls."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the estimated charge; send nothing."),
    seed: int = typer.Option(0, "--seed"),
    compare_with: Optional[str] = typer.Option(None, "--compare-with", help="Verification: also score the same pairs "
                                               "with another endpoint (its URL; same credentials, headers and "
                                               "limits, its own journal) or `engine` (this engine in-process, as "
                                               "`audit images` scores), and report both side by side."),
    workers: Optional[int] = typer.Option(None, "--workers", help="--compare-with engine: template workers."),
    target_fmr: list[float] = TargetsOpt,
    resamples: int = ResamplesOpt,
    interval: str = IntervalOpt,
    pdf_out: Optional[Path] = PdfOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Audit a live endpoint: plan and price the calls, send them politely (resumable), then write
    the score file, every response, and the report (scores.csv, report.html, report.md, report.json;
    with --compare-with, the second system's scores under compare/ and one side-by-side report)."""
    from faceledger.evaluation import endpoint_audit as ea
    from faceledger.evaluation import endpoint_compare as ec
    from faceledger.evaluation.endpoint_client import Endpoint, Journal, is_amazon, read_prices
    from faceledger.interfaces.cli.common import err, progress
    from faceledger.settings import Settings

    with errors(as_json):
        if protocol not in ("verification", "identification"):
            raise InvalidParameterError("--protocol must be verification or identification")
        if compare_with == "engine" and protocol != "verification":
            raise InvalidParameterError("--compare-with engine compares on the verification protocol's pairs; for the "
                                        "identification protocol, compare with another endpoint (its URL)")
        if compare_with is not None and compare_with == endpoint_url:
            raise InvalidParameterError("--compare-with names the audited endpoint itself: give another URL, or engine")
        extra_headers = {}
        for h in headers:
            name, sep, value = h.partition("=")
            if not sep or not name.strip():
                raise InvalidParameterError(f"--header {h!r}: write NAME=VALUE")
            extra_headers[name.strip()] = value
        items = _dataset_items(Settings.load(), dataset, by=by, people=people, per_group=per_group, seed=seed)
        images = ea.Images(items)
        journal = Journal(journal_path or out_dir / "journal.sqlite")
        prices = read_prices(price_table) if is_amazon(endpoint_url) else None
        name = endpoint_url or f"Amazon Rekognition ({region or 'your default region'})"
        journal.bind(name)
        done = journal.keys()
        second_plan = second_done = second_prices = None
        if compare_with not in (None, ec.ENGINE):  # its own journal: resumable like the first
            second_journal = Journal(out_dir / "compare" / "journal.sqlite")
            second_journal.bind(compare_with)
            second_done = second_journal.keys()
            second_prices = read_prices(price_table) if is_amazon(compare_with) else None
        pairs = design = None
        if protocol == "verification":
            pairs = ea.verification_pairs(items, nonmated=nonmated, mated=mated, seed=seed)
            plan = ea.plan_verification(name, images, pairs, done, prices)
            if second_done is not None:
                second_plan = ea.plan_verification(compare_with, images, pairs, second_done, second_prices)
        else:
            design = ea.identification_design(items, gallery=gallery, probes=probes, seed=seed)
            cid = ea.collection_id_for(images, design)
            plan = ea.plan_identification(name, images, design, cid, done, prices)
            if second_done is not None:
                second_plan = ea.plan_identification(compare_with, images, design, cid, second_done, second_prices)
        if dry_run:
            shown = {"dry_run": True, **plan.to_dict(), **({"compare_with": second_plan.to_dict()} if second_plan else {})}
            print(json.dumps(_finite(shown), indent=2) if as_json
                  else "\n".join([plan.text()] + ([second_plan.text()] if second_plan else [])))
            return
        err.print(plan.text(), highlight=False)
        to_send = sum(plan.to_send.values())
        if second_plan is not None:
            err.print(second_plan.text(), highlight=False)
            to_send += sum(second_plan.to_send.values())
        if not yes and to_send and not typer.confirm("Send these calls?", err=True):
            raise typer.Exit(1)
        endpoint = Endpoint(journal, endpoint_url=endpoint_url, region=region, headers=extra_headers,
                            concurrency=concurrency, rate=rate, attempts=attempts, rounds=rounds)
        with progress() as bar:
            task = bar.add_task(f"{protocol}: calls", total=sum(plan.calls.values()) - plan.calls.get("CreateCollection", 0)
                                - plan.calls.get("DeleteCollection", 0))
            advance = lambda n: bar.advance(task, n)  # noqa: E731
            if protocol == "verification":
                result = ea.run_verification(endpoint, images, pairs, concurrency=concurrency, advance=advance)
            else:
                result = ea.run_identification(endpoint, images, design, cid, concurrency=concurrency, advance=advance)
        ea.write_scores(result, out_dir / "scores.csv")
        if compare_with is not None:
            second_name, second = _second_system(
                compare_with, images, pairs or design, second_plan, out_dir=out_dir, region=region, headers=extra_headers,
                concurrency=concurrency, rate=rate, attempts=attempts, rounds=rounds, workers=workers)
            ea.write_scores(second, out_dir / "compare" / "scores.csv")
        mated_rows = int(result.scores.mated.sum())
        report = None  # an endpoint that withheld every non-mated (or mated) candidate leaves no pair tables
        if 0 < mated_rows < len(result.scores.score) or protocol == "verification":
            report = audit(result.scores, targets=target_fmr, resamples=resamples, interval=interval,
                           thresholds=thresholds)
        about = {"endpoint": name, "protocol": protocol, "dataset": f"lfw by {by}" if dataset == "lfw" else dataset,
                 "units": ec.SIMILARITY_UNITS,
                 "failures_to_acquire": result.failures_to_acquire, "censored_pairs": result.censored,
                 "calls_sent": result.calls, "seconds": round(result.seconds, 1),
                 "calls_per_second": round(result.calls / result.seconds, 2) if result.seconds else None,
                 "plan": plan.to_dict(), **{k: v for k, v in result.extra.items() if not k.startswith("_")}}
        title = f"Audit of {name}: {protocol} on {about['dataset']}"
        if compare_with is not None and protocol == "verification":
            _emit_compared(name, result, about, second_name, second, second_plan, title, out_dir, as_json, pdf_out,
                           dict(targets=target_fmr, resamples=resamples, interval=interval), thresholds)
            return
        if protocol == "identification":
            rates = ea.identification_rates(images, design, result, thresholds,
                                            gallery_sizes=sorted({max(1, gallery // 10), max(1, gallery // 2), gallery}))
            about["identification"] = [r.to_dict() for r in rates]
            (out_dir / "aclu_table.md").write_text(ea.aclu_table(rates, len(design.gallery)) + "\n")
            if compare_with is not None:
                _emit_compared_identification(name, about, second_name, second, second_plan, images, design, title,
                                              out_dir, as_json, pdf_out, thresholds, gallery)
                return
        from faceledger.evaluation.audit_report import render_html, render_html_identification

        if report is None:
            summary = f"# {title}\n\n" + (out_dir / "aclu_table.md").read_text()
            _write(summary, json.dumps(_finite(about), indent=2), lambda: render_html_identification(title, about),
                   as_json, out_dir / "report.md", out_dir / "report.html", out_dir / "report.json", about, pdf_out)
            return
        _write(markdown(report), json.dumps(_finite({**about, **report.to_dict()}), indent=2),
               lambda: render_html(report, title, about=about), as_json, out_dir / "report.md", out_dir / "report.html",
               out_dir / "report.json", about, pdf_out)


def _second_system(compare_with: str, images, pairs, plan, *, out_dir: Path, workers, **client):
    """(name, scores) of the system compared with the endpoint (endpoint_compare.run_second), under
    a progress bar."""
    from faceledger.evaluation import endpoint_compare as ec
    from faceledger.interfaces.cli.common import progress
    from faceledger.settings import Settings

    with progress() as bar:
        task = bar.add_task("this engine: templates" if compare_with == ec.ENGINE else "compared endpoint: calls",
                            total=ec.second_total(compare_with, pairs, plan))
        return ec.run_second(compare_with, Settings.load(), images, pairs, plan, out_dir / "compare" / "journal.sqlite",
                             workers=workers, advance=lambda n: bar.advance(task, n), **client)


def _emit_compared(name, result, about, second_name, second, second_plan, title, out_dir, as_json, pdf_out, kw,
                   thresholds) -> None:
    from faceledger.evaluation import endpoint_compare as ec

    reports, abouts = ec.compared_verification(name, result, about, second_name, second, engine=second_plan is None,
                                               thresholds=thresholds, **kw)
    extra = {**abouts[name], "compare_with": abouts[second_name]}
    _emit_side_by_side(reports, f"{title}, compared with {second_name}", as_json, out_dir / "report.md",
                       out_dir / "report.html", out_dir / "report.json", extra, ec.COMPARED_NOTE, pdf_out=pdf_out,
                       abouts=abouts)


def _emit_compared_identification(name, about, second_name, second, second_plan, images, design, title, out_dir,
                                  as_json, pdf_out, thresholds, gallery) -> None:
    """Two endpoints' searches of the same gallery by the same probes, side by side (Markdown,
    HTML, JSON); the second endpoint's own ACLU-style table in compare/."""
    from faceledger.evaluation import endpoint_compare as ec
    from faceledger.evaluation.audit_report import render_html_identification_side_by_side

    second_about, table = ec.compared_identification(images, design, second_name, second, second_plan, about,
                                                      thresholds, gallery)
    (out_dir / "compare" / "aclu_table.md").write_text(table + "\n")
    abouts = {name: about, second_name: second_about}
    heading = f"{title}, compared with {second_name}"
    extra = {**about, "compare_with": second_about}
    _write(ec.identification_side_by_side_markdown(heading, abouts), json.dumps(_finite(extra), indent=2),
           lambda: render_html_identification_side_by_side(heading, ec.COMPARED_SEARCHES_NOTE, abouts), as_json,
           out_dir / "report.md", out_dir / "report.html", out_dir / "report.json", extra, pdf_out)


def _dataset_items(settings, dataset: str, *, by: str, people, per_group, seed: int):
    from faceledger.evaluation.audit_images import fairface_items, lfw_items
    from faceledger.evaluation.datasets import read_manifest

    if dataset == "lfw":
        return lfw_items(settings, by=by, people=people, seed=seed)
    if dataset == "fairface":
        return fairface_items(settings, per_group=per_group, seed=seed)
    if dataset.lower().endswith(".csv"):
        return read_manifest(Path(dataset))
    raise InvalidParameterError("--dataset must be fairface, lfw or a manifest .csv file")
