"""`faceledger audit`: per-group error rates of any system's scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from .audit import audit, markdown, read_scores
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
    as_json: bool = JsonOpt,
) -> None:
    """Audit a score file from any system: FMR and FNMR per group at shared thresholds."""
    with errors(as_json):
        report = audit(read_scores(path, direction=direction), targets=target_fmr, reference_group=reference_group,
                       resamples=resamples)
        summary = markdown(report)
        if markdown_out:
            markdown_out.write_text(summary)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
        else:
            out.print(summary, markup=False, highlight=False)
