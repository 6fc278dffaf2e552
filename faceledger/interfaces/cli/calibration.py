"""`faceledger calibration fit|table`: make the similarity <-> FMR file, and show what it says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from faceledger.interfaces.cli.common import JsonOpt, err, errors, out, progress
from faceledger.errors import InvalidParameterError

calibration_app = typer.Typer(help="The calibrated map from score to false match rate.", no_args_is_help=True)

@calibration_app.command("fit")
def fit_command(
    out_path: Optional[Path] = typer.Option(None, "--out", help="Where to write the calibration (default: the model's "
                                            "folder under models_dir, where the service reads it; never the "
                                            "installed package). The normaliser goes beside it."),
    model: Optional[str] = typer.Option(None, "--model", help="The model to calibrate (`faceledger models list`); "
                                        "default: the configured one."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Fit on your own labelled images instead of "
                                            "FairFace + LFW: a CSV with path, group and subject (split by subject)."),
    fairface_images: Optional[int] = typer.Option(None, "--fairface-images", help="Only the first N FairFace images."),
    lfw_images: Optional[int] = typer.Option(None, "--lfw-images", help="Only the first N LFW images."),
    workers: Optional[int] = typer.Option(None, "--workers"),
    normalisation: str = typer.Option("none", "--normalisation", help="none: calibrate cosines; cohort: fit the "
                                      "score normaliser too (written beside the calibration) and calibrate its "
                                      "scores on look-alike non-mated pairs."),
    pair_weight: float = typer.Option(0.0, "--pair-weight", help="cohort: 0 (shipped) subtracts each template's own "
                                      "closeness to its cohort neighbourhood; w in (0, 1] mixes in how close the "
                                      "other side lies to it, without cluster offsets (docs/fairness.md)."),
    as_json: bool = JsonOpt,
) -> None:
    """Fit the calibration from every non-mated FairFace and LFW pair (or your manifest's) of the
    fit half of the people, validate it on the held-out half, and write it (byte-identical for the
    same data) into the model's folder."""
    from faceledger.scoring import normalisation as norm_mod
    from faceledger.evaluation.calibration_fit import (
        LOOKALIKE_CLUSTERS, dataset_sources, dumps, fit, fit_normaliser, manifest_sources, validate,
    )
    from faceledger.models.registry import Registry
    from faceledger.scoring.calibration import Calibration, fitted_name
    from faceledger.scoring.scoring import NORMALISATIONS
    from faceledger.settings import Settings

    with errors(as_json):
        if normalisation not in NORMALISATIONS:
            raise InvalidParameterError(f"--normalisation is one of {', '.join(NORMALISATIONS)}")
        if not 0 <= pair_weight <= 1 or (pair_weight and normalisation != "cohort"):
            raise InvalidParameterError("--pair-weight is between 0 and 1, and applies to --normalisation cohort")
        settings = Settings.load(model=model)
        entry = Registry.of(settings).resolve(settings)
        model = str(entry.id)
        templates = lambda title, paths, **kw: _templates(title, paths, settings, workers=workers, **kw)  # noqa: E731
        if manifest is not None:
            sources = manifest_sources(manifest, templates)
        else:
            sources = dataset_sources(settings, fairface_images, lfw_images, templates)
        target = out_path or entry.folder / fitted_name(normalisation)
        target.parent.mkdir(parents=True, exist_ok=True)
        normaliser = None
        if normalisation == "cohort":
            err.print("fitting the score normaliser (k-means cohort, "
                      + (f"pair weight {pair_weight:g})" if pair_weight else "per-cluster offsets)"))
            normaliser = fit_normaliser(sources, model, pair_weight, entry.folder)
            norm_path = target.with_name(norm_mod.SHIPPED.get(entry.name, f"normaliser-{entry.name}.json")
                                         if out_path else norm_mod.FITTED)
            norm_path.write_text(normaliser.dumps())
            err.print(f"wrote {norm_path}: {len(normaliser.centroids)} cohort centroids")
        content, held = fit(sources, model, progress=lambda msg: err.print(msg), normaliser=normaliser,
                            lookalike=LOOKALIKE_CLUSTERS if normaliser is not None else 0)
        content["validation"] = validate(Calibration.from_dict(content), held)
        target.write_text(dumps(content))
        if as_json:
            print(json.dumps({"path": str(target), **content["validation"]}, indent=2))
            return
        out.print(f"wrote {target}: {content['fit']['nonmated_pairs']:,} fitted non-mated pairs; "
                  f"data resolve FMR down to {content['data_resolves_to']:.1e}, tail model beyond")
        table = Table(title="held-out validation", title_justify="left")
        for col in ("target FMR", "threshold", "observed FMR (95% CI)", "ratio"):
            table.add_column(col)
        for row in content["validation"]["overall"]:
            table.add_row(f"{row['target']:.0e}", f"{row['threshold']:.4f}",
                          f"{row['observed']:.2e} ({row['ci95'][0]:.1e}..{row['ci95'][1]:.1e})"
                          + ("" if row["resolved"] else " not resolved"), f"{row['ratio']:.2f}")
        out.print(table)


def _templates(title: str, paths, settings, **kwargs):
    from faceledger.evaluation.protocols import acquire

    with progress() as bar:
        task = bar.add_task(title, total=len(paths))
        return acquire(paths, settings, advance=lambda n: bar.advance(task, n), **kwargs)


@calibration_app.command("table")
def table_command(
    model: Optional[str] = typer.Option(None, "--model", help="The model (default: the configured one)."),
    lfw_pairs: Optional[int] = typer.Option(None, "--lfw-pairs", help="Measure the share kept on the first N "
                                            "held-out same-person pairs only (a quick run; default: all, 1,461)."),
    as_json: bool = JsonOpt,
) -> None:
    """Similarity <-> false match rate <-> score threshold for this engine's model and
    score_normalisation (the score is a cosine, or a normalised cosine), and what each row keeps:
    the share of LFW View 2's same-person pairs of people held out of the fit that reach it (templates from the cache; computed once when missing)."""
    from faceledger.errors import DatasetError
    from faceledger.evaluation.operating_points import lfw_genuine_held_out
    from faceledger.models.registry import Registry
    from faceledger.scoring.calibration import fmr_of_similarity
    from faceledger.scoring.scoring import Scoring
    from faceledger.settings import Settings

    with errors(as_json):
        settings = Settings.load(model=model)
        entry = Registry.of(settings).resolve(settings)
        scoring = Scoring.of(str(entry.id), settings.score_normalisation, entry.folder)
        cal = scoring.calibration
        score = "cosine" if settings.score_normalisation == "none" else f"{settings.score_normalisation} score"
        try:
            with progress() as bar:
                task = bar.add_task("LFW templates", total=None)
                genuine = lfw_genuine_held_out(settings, scoring, advance=lambda n: bar.advance(task, n),
                                               on_total=lambda n: bar.update(task, total=n), limit=lfw_pairs)
            kept_note = (f"LFW View 2 same-person pairs held out of the fit: {len(genuine.scores):,} pairs of "
                         f"{genuine.people:,} people" + (f" ({genuine.not_acquired} left out: no face found)"
                                                         if genuine.not_acquired else ""))
        except DatasetError as exc:
            genuine, kept_note = None, f"share of same-person pairs kept: not measured ({exc.message})"
        rows = []
        for sim in (0, 14.3, 28.6, 42.9, 50, 57.1, 60, 70, 71.4, 80, 85.7, 90, 95, 99, 100):
            fmr = fmr_of_similarity(sim)
            thr = cal.threshold_for_fmr(fmr)
            rows.append({"Similarity": sim, "FalseMatchRate": fmr, "ScoreThreshold": round(thr, 4),
                         "From": "data" if cal.in_data(thr) else "tail model",
                         "LfwSamePersonKept": None if genuine is None else round(genuine.share_at(thr), 4)})
        if as_json:
            print(json.dumps({"Model": cal.model, "Score": cal.meta["score"], "DataResolvesTo": cal.data_resolves_to,
                              "ScoreNormalisation": settings.score_normalisation,
                              "LfwSamePersonPairs": None if genuine is None else len(genuine.scores),
                              "Rows": rows}, indent=2))
            return
        table = Table(title=f"{cal.model} ({settings.score_normalisation} scores): data resolve FMR down to "
                      f"{cal.data_resolves_to:.1e}", title_justify="left")
        for col in ("Similarity", "FMR", f"{score} >=", "from", "LFW same-person kept"):
            table.add_column(col)
        for r in rows:
            kept = "-" if r["LfwSamePersonKept"] is None else f"{100 * r['LfwSamePersonKept']:.1f}%"
            table.add_row(f"{r['Similarity']:g}", f"{r['FalseMatchRate']:.1e}", f"{r['ScoreThreshold']:.4f}", r["From"], kept)
        out.print(table)
        out.print(kept_note, soft_wrap=True)
