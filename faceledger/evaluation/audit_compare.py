"""The same comparisons audited under two scorings (plain cosines, normalised scores), side by side.

Reports are matched by operating point name ("global FMR 1e-3", "calibrated FMR 1e-3"), so the
tables read: at the same global false match rate, which scoring treats groups more alike, and at
the threshold each scoring's calibration states for a rate, how far each group's observed rate
is from it (1.00: the stated rate holds for the group).
"""

from __future__ import annotations

from faceledger.evaluation.audit import AuditReport, Rate, by_subject_columns, differential_text, rate_text, subject_rate_text

DIFFERENTIALS = (("fmr_max_geomean", "FMR Max/GeoMean"), ("fmr_max_min_ratio", "FMR max/min"),
                 ("fnmr_max_geomean", "FNMR Max/GeoMean"), ("fnmr_max_min_ratio", "FNMR max/min"),
                 ("fnmr_by_subject_max_geomean", "FNMR Max/GeoMean, each subject once"),
                 ("fnmr_by_subject_max_min_ratio", "FNMR max/min, each subject once"),
                 ("fmr_by_subject_max_geomean", "FMR Max/GeoMean, each pair of subjects once"),
                 ("fmr_by_subject_max_min_ratio", "FMR max/min, each pair of subjects once"))


def _ratio(r: Rate, target: float) -> str:
    if not r.trials:
        return "no pairs"
    text = f"{r.rate / target:.2f} ({r.ci_low / target:.2f} to {r.ci_high / target:.2f})"
    return text if r.resolved else f"{text}, not resolved"


def side_by_side_rows(reports: dict[str, AuditReport]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) per operating point that every report has."""
    names = list(reports)
    first = reports[names[0]]
    tables = []
    for point in first.points:
        matched = [next((p for p in reports[n].points if p.name == point.name), None) for n in names]
        if any(p is None for p in matched):
            continue
        calibrated = point.name.startswith("calibrated")
        if calibrated:
            header = ["group"] + [f"observed / stated FMR: {n}" for n in names]
            rows = [[g.group] + [_ratio(p.groups[k].fmr, p.target_fmr) for p in matched]
                    for k, g in enumerate(point.groups)]
            heading = (f"At the threshold each calibration states for FMR {point.target_fmr:g}: each group's "
                       "observed within-group FMR over the stated rate (95% CI)")
        else:
            by_subject = by_subject_columns([g for p in matched for g in p.groups])
            header = (["group"] + [f"FMR: {n}" for n in names] + [f"FNMR: {n}" for n in names]
                      + [f"{label}: {n}" for _, label in by_subject for n in names])
            rows = [[g.group] + [rate_text(p.groups[k].fmr) for p in matched]
                    + [rate_text(p.groups[k].fnmr) for p in matched]
                    + [subject_rate_text(p.groups[k], attr) for attr, _ in by_subject for p in matched]
                    for k, g in enumerate(point.groups)]
            heading = f"{point.name}: each column its own threshold, set on its own scores of all of these comparisons"
        units = [reports[n].direction for n in names]
        rows.insert(0, ["threshold (each in its own units" + (", distances as distances" if "distance" in units else "")
                        + ")"] + [f"{reports[n].shown(p.threshold):.6g}" for n, p in zip(names, matched)]
                    + [""] * (len(header) - 1 - len(names)))
        for key, label in DIFFERENTIALS:
            if all(key in p.differentials for p in matched):
                cells = [differential_text(p, key) for p in matched]
                rows.append([label] + cells + [""] * (len(header) - 1 - len(cells)))
        tables.append((heading, header, rows))
    return tables


def side_by_side_markdown(reports: dict[str, AuditReport], note: str) -> str:
    lines = [f"# Side by side: {' / '.join(reports)}", "", note, ""]
    for heading, header, rows in side_by_side_rows(reports):
        lines += [f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    return "\n".join(lines)
