"""A second system scored on exactly the pairs of an endpoint audit, for the side-by-side report.

The second system is another Rekognition-compatible endpoint (the same polite, journalled client,
with a journal of its own: an interrupted comparison resumes without repeating its paid calls) or
this engine in-process (``engine``): templates from the template cache, as ``audit images`` makes
them, scored as the service scores them (its configured normalisation and calibration). The engine
takes the largest face of each image, as CompareFaces does, so that the same engine behind an
endpoint gives the same errors on the same pairs.

Each system keeps its own units (an endpoint's Similarity 0-100, the engine's cosine or normalised
score): rates are compared at operating points both reports have (the same global false match rate
set on each system's own scores; a fixed threshold only where both speak the same units).
Rates are read on the pairs *both* systems scored, so that a difference is the systems', not the
sample's; each system's failures to acquire are reported beside them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from faceledger.evaluation.audit import Scores
from faceledger.evaluation.endpoint_audit import EndpointScores, Images
from faceledger.errors import EndpointError, InvalidParameterError

ENGINE = "engine"
#: The units of an endpoint's scores, said beside every threshold and curve.
SIMILARITY_UNITS = "the endpoint's Similarity (0-100, higher means more alike)"


def engine_scoring(settings):
    """(label, Scoring) the service would score with: its configured normalisation, falling back
    to plain cosines for a model without a normaliser (as the service does)."""
    from faceledger.models.registry import model_id
    from faceledger.scoring.calibration import CalibrationMissingError
    from faceledger.scoring.scoring import Scoring

    model = model_id(settings)
    folder = settings.models_dir / model.name
    try:
        scoring = Scoring.of(str(model), settings.score_normalisation, folder)
    except CalibrationMissingError:
        if settings.score_normalisation == "none":
            scoring = Scoring("none", None)
        else:
            scoring = Scoring.of(str(model), "none", folder)
    return model, scoring


def engine_units(scoring) -> str:
    if scoring.normaliser is not None:
        return f"this engine's {scoring.normalisation}-normalised score of two templates (higher means more alike)"
    return "this engine's cosine of two templates (-1 to 1, higher means more alike)"


def engine_verification(settings, images: Images, pairs, *, workers: int | None = None,
                        advance: Callable[[int], None] | None = None) -> EndpointScores:
    """The engine's score of every pair, in its own units; an image without a face is a failure
    to acquire for both groups of each of its pairs, as an endpoint's refusal is."""
    from faceledger.evaluation.protocols import acquire

    start = time.monotonic()
    model, scoring = engine_scoring(settings)
    used = sorted({i for i, _, _ in pairs} | {j for _, j, _ in pairs})
    got = acquire([Path(images.items[k][0]) for k in used], settings, prealigned=False, expected=None,
                  workers=workers, advance=advance)
    vector = {k: got[Path(images.items[k][0])].vector for k in used}
    rows, fta = [], {}
    for i, j, mated in pairs:
        (pa, sa, ga), (pb, sb, gb) = images.items[i], images.items[j]
        if vector[i] is None or vector[j] is None:
            for g in {ga, gb}:
                fta[g] = fta.get(g, 0) + 1
            continue
        rows.append({"score": scoring.score(vector[i], vector[j]), "mated": mated, "group_a": ga, "group_b": gb,
                     "subject_a": str(sa), "subject_b": str(sb), "path_a": str(pa), "path_b": str(pb),
                     "censored": False, "target_faces": 1, "response": {"model": str(model),
                                                                         "normalisation": scoring.normalisation}})
    if not rows:
        raise InvalidParameterError("the engine found a face in no pair of images: nothing to compare")
    s = _scores(rows)
    return EndpointScores(s, rows, fta, 0, 0, time.monotonic() - start,
                          {"units": engine_units(scoring), "model": str(model), "normalisation": scoring.normalisation})


def _scores(rows: list[dict]) -> Scores:
    return Scores.from_labels([r["score"] for r in rows], [r["mated"] for r in rows], [r["group_a"] for r in rows],
                              [r["group_b"] for r in rows], [r["subject_a"] for r in rows], [r["subject_b"] for r in rows])


def common_pairs(a: EndpointScores, b: EndpointScores) -> tuple[Scores, Scores, int]:
    """Both systems' scores on the pairs both scored (in the first system's order), and how many
    pairs only one of them scored."""
    key = lambda r: (r["path_a"], r["path_b"])  # noqa: E731
    theirs = {key(r): r for r in b.rows}
    ours = [r for r in a.rows if key(r) in theirs]
    if not ours:
        raise EndpointError("the two systems scored no pair in common: nothing to put side by side")
    only = len(a.rows) + len(b.rows) - 2 * len(ours)
    return _scores(ours), _scores([theirs[key(r)] for r in ours]), only


def identification_side_by_side(rates: dict[str, list[dict]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the searches' table for several endpoints on the same gallery and probes:
    per probe group and threshold (each endpoint's Similarity), the whole gallery, each system's
    falsely matched and missed probes with their 95% intervals."""
    from faceledger.evaluation.endpoint_audit import _pct

    names = list(rates)
    full = {n: max(r["gallery"] for r in rates[n]) for n in names}
    keyed = {n: {(r["group"], r["threshold"]): r for r in rates[n] if r["gallery"] == full[n]} for n in names}
    keys = sorted({k for n in names for k in keyed[n]}, key=lambda k: (k[1], k[0]))

    def fpir(r):
        return "n/a" if r is None else (f"{r['false_matched']:,} of {r['nonmated_probes']:,}: {_pct(r['fpir'])} "
                                        f"({_pct(r['fpir_ci'][0])} to {_pct(r['fpir_ci'][1])})")

    def fnir(r):
        return "n/a" if r is None else (f"{r['missed']:,} of {r['mated_probes']:,}: {_pct(r['fnir'])} "
                                        f"({_pct(r['fnir_ci'][0])} to {_pct(r['fnir_ci'][1])})")

    header = (["probe group", "threshold"] + [f"falsely matched (FPIR): {n}" for n in names]
              + [f"missed (FNIR): {n}" for n in names])
    rows = [[g, f"{t:g}"] + [fpir(keyed[n].get((g, t))) for n in names] + [fnir(keyed[n].get((g, t))) for n in names]
            for g, t in keys]
    return header, rows


# --- running the second system, and the reports of both -------------------------------------------

COMPARED_NOTE = ("The same pairs of images scored by two systems, each in its own units; rates are compared on the "
                 "pairs both scored, at thresholds each system's own scores set for the same global false match "
                 "rate (and at the fixed thresholds both speak, where both are endpoints). Each system's full "
                 "report, with its summary, methods and curves, follows the tables.")
COMPARED_SEARCHES_NOTE = ("The same gallery indexed and the same probes searched on two endpoints, each at its own "
                          "Similarity thresholds; each endpoint's full table and methods follow.")


def second_total(compare_with: str, pairs, plan) -> int:
    """The progress bar's total: images whose templates the engine needs, or calls to the endpoint."""
    if compare_with == ENGINE:
        return len({i for i, _, _ in pairs} | {j for _, j, _ in pairs})
    return sum(plan.calls.values()) - plan.calls.get("CreateCollection", 0) - plan.calls.get("DeleteCollection", 0)


def run_second(compare_with: str, settings, images: Images, pairs, plan, journal_path: Path, *,
               workers: int | None = None, advance: Callable[[int], None] | None = None, **client):
    """(name, scores) of the second system on the same pairs (or, for the identification protocol,
    ``pairs`` is the design: the same gallery and probes): this engine in-process, or another
    endpoint through the same client, with its own journal at ``journal_path``."""
    from faceledger.evaluation import endpoint_audit as ea
    from faceledger.evaluation.endpoint_client import Endpoint, Journal

    if compare_with == ENGINE:
        second = engine_verification(settings, images, pairs, workers=workers, advance=advance)
        return f"this engine ({second.extra['model']}, {second.extra['normalisation']})", second
    journal = Journal(journal_path)
    journal.bind(compare_with)
    endpoint = Endpoint(journal, endpoint_url=compare_with, **client)
    concurrency = client.get("concurrency", 4)
    if isinstance(pairs, ea.IdentificationDesign):
        second = ea.run_identification(endpoint, images, pairs, ea.collection_id_for(images, pairs),
                                       concurrency=concurrency, advance=advance)
    else:
        second = ea.run_verification(endpoint, images, pairs, concurrency=concurrency, advance=advance)
    second.extra.update(units=SIMILARITY_UNITS, plan=plan.to_dict())
    return compare_with, second


def compared_verification(name: str, result: EndpointScores, about: dict, second_name: str, second: EndpointScores, *,
                          engine: bool, thresholds, **audit_kw) -> tuple[dict, dict]:
    """(reports, abouts) of both systems on the pairs both scored; the engine is audited at the
    global false match rates only (the endpoint's fixed thresholds are in the endpoint's units)."""
    from faceledger.evaluation.audit import audit

    first, other, only = common_pairs(result, second)
    reports = {name: audit(first, thresholds=thresholds, **audit_kw),
               second_name: audit(other, thresholds=() if engine else thresholds, **audit_kw)}
    calls = {} if engine else {"calls_sent": second.calls,
                               "calls_per_second": round(second.calls / second.seconds, 2) if second.seconds else None}
    second_about = {"endpoint": second_name, "protocol": "verification", "dataset": about["dataset"],
                    "failures_to_acquire": second.failures_to_acquire, "censored_pairs": second.censored,
                    "pairs_scored_by_one": only, "seconds": round(second.seconds, 1), **calls,
                    **{k: v for k, v in second.extra.items() if not k.startswith("_")}}
    return reports, {name: {**about, "pairs_scored_by_one": only}, second_name: second_about}


def compared_identification(images: Images, design, second_name: str, second: EndpointScores, plan, about: dict,
                            thresholds, gallery: int) -> tuple[dict, str]:
    """(what the second endpoint's searches measured, its ACLU-style table in Markdown)."""
    from faceledger.evaluation import endpoint_audit as ea

    rates = ea.identification_rates(images, design, second, thresholds,
                                    gallery_sizes=sorted({max(1, gallery // 10), max(1, gallery // 2), gallery}))
    second_about = {"endpoint": second_name, "protocol": "identification", "dataset": about["dataset"],
                    "units": SIMILARITY_UNITS, "failures_to_acquire": second.failures_to_acquire,
                    "calls_sent": second.calls, "seconds": round(second.seconds, 1),
                    "calls_per_second": round(second.calls / second.seconds, 2) if second.seconds else None,
                    "plan": plan.to_dict(), "identification": [r.to_dict() for r in rates],
                    **{k: v for k, v in second.extra.items() if not k.startswith("_")}}
    return second_about, ea.aclu_table(rates, len(design.gallery))


def identification_side_by_side_markdown(heading: str, abouts: dict[str, dict]) -> str:
    header, rows = identification_side_by_side({n: a["identification"] for n, a in abouts.items()})
    return "\n".join([f"# {heading}", "", COMPARED_SEARCHES_NOTE, "", "| " + " | ".join(header) + " |",
                      "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
