"""`faceledger audit`: per-group error rates of any system's scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from .audit import audit, markdown, read_scores
from .audit_report import render_html
from .cli_common import JsonOpt, errors, out

audit_app = typer.Typer(no_args_is_help=True, help="Demographic audit: per-group error rates with intervals.")


@audit_app.command("scores")
def audit_scores(
    path: Path = typer.Argument(..., help="CSV: score, mated, group (or group_a, group_b), optional subject_a, subject_b."),
    direction: str = typer.Option("similarity", "--direction", help="similarity (higher = alike) or distance."),
    target_fmr: list[float] = typer.Option([1e-3, 1e-4], "--target-fmr", help="Global thresholds set for these FMRs."),
    reference_group: Optional[str] = typer.Option(None, "--reference-group", help="Also set thresholds on this group."),
    resamples: int = typer.Option(200, "--resamples", help="Subject-level bootstrap resamples (0: none)."),
    markdown_out: Optional[Path] = typer.Option(None, "--markdown", help="Also write the Markdown summary here."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Also write the self-contained HTML report here."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the JSON with every number here."),
    as_json: bool = JsonOpt,
) -> None:
    """Audit a score file from any system: FMR and FNMR per group at shared thresholds."""
    with errors(as_json):
        report = audit(read_scores(path, direction=direction), targets=target_fmr, reference_group=reference_group,
                       resamples=resamples)
        summary = markdown(report)
        document = json.dumps(_finite(report.to_dict()), indent=2)
        if markdown_out:
            markdown_out.write_text(summary)
        if html_out:
            html_out.write_text(render_html(report, f"Demographic audit of {path.name}"))
        if json_out:
            json_out.write_text(document)
        if as_json:
            print(document)
        else:
            out.print(summary, markup=False, highlight=False)


def _finite(value):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
