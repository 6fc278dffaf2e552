"""The audit as one self-contained HTML page (tables and inline SVG plots, no scripts, no fetches).

Readable by a journalist: each table says in words what the numbers mean; rates the data cannot
resolve are shown as "not resolved" with their upper bound, never as a precise-looking number.
"""

from __future__ import annotations

import html
import math

from faceledger.evaluation.audit import AuditReport, Curve, Rate, by_subject_columns, differential_text, rate_text, subject_rate_text

PALETTE = ["#1b6ca8", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#2a9d8f", "#8d6a9f", "#e76f51",
           "#264653", "#f4a261", "#577590", "#90be6d", "#f94144", "#43aa8b"]


def _head(title: str) -> list[str]:
    return [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.nr{color:#a00}"
        "figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:90%;color:#555}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]


def render_html(report: AuditReport, title: str = "Demographic audit") -> str:
    return "\n".join(_head(title) + _body(report) + ["</body></html>"])


def render_html_side_by_side(reports: dict[str, AuditReport], title: str, note: str) -> str:
    """One page: the side-by-side tables (audit_compare.py), then each scoring's full report."""
    from faceledger.evaluation.audit_compare import side_by_side_rows

    parts = _head(title) + [f"<p>{html.escape(note)}</p>"]
    for heading, header, rows in side_by_side_rows(reports):
        parts.append(f"<h2>{html.escape(heading)}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                     + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    for name, report in reports.items():
        parts.append(f"<h1>Scores: {html.escape(name)}</h1>")
        parts += [x.replace("<h2", "<h3").replace("</h2>", "</h3>") for x in _body(report)]
    return "\n".join(parts + ["</body></html>"])


def _body(report: AuditReport) -> list[str]:
    parts = [
        f"<p>{report.comparisons:,} comparisons: {report.mated:,} mated (same person) and {report.nonmated:,} "
        "non-mated (different people). A <b>false match</b> is a non-mated pair scored as a match; a <b>false "
        "non-match</b> is a mated pair scored as no match. Intervals are 95% Wilson intervals"
        + (f" and a subject-level bootstrap of {report.resamples} resamples" if report.resamples else "")
        + ". Demographic groups are the dataset's own annotations.</p>",
    ]
    for p in report.points:
        parts.append(f"<h2 id='{html.escape(_slug(p.name))}'>{html.escape(p.name)} (threshold {p.threshold:.6g})</h2>")
        by_subject = by_subject_columns(p.groups, spelled_out=True)
        parts.append("<table class='rates'><tr><th>group</th><th>false match rate</th><th>non-mated pairs</th>"
                     "<th>bootstrap interval</th><th>false non-match rate</th><th>mated pairs</th>"
                     + "".join(f"<th>{html.escape(label)}</th>" for _, label in by_subject)
                     + "<th>cross-group FMR</th></tr>")
        for g in p.groups:
            parts.append(
                f"<tr><td>{html.escape(g.group)}</td><td>{_cell(g.fmr)}</td><td>{g.fmr.trials:,}</td>"
                f"<td>{_boot(g.fmr)}</td><td>{_cell(g.fnmr)}</td><td>{g.fnmr.trials:,}</td>"
                + "".join(f"<td>{html.escape(subject_rate_text(g, attr))}</td>" for attr, _ in by_subject)
                + f"<td>{_cell(g.cross_fmr)}</td></tr>"
            )
        parts.append("</table>")
        if p.differentials:
            parts.append("<table class='differentials'><tr><th>differential</th><th>value (95% interval; what groups "
                         "with equal rates would read on data this size: median, up to the 95th percentile)</th></tr>")
            parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(differential_text(p, k))}</td></tr>"
                      for k in p.differentials]
            parts.append("</table>")
    if report.curves:
        parts.append("<h2>Curves</h2>")
        parts.append(_figure(_det_svg(report.curves), "DET: false non-match rate against false match rate (log scales), per group"))
        parts.append(_figure(_hist_svg(report.curves, mated=False), "Non-mated score distributions per group"))
        parts.append(_figure(_hist_svg(report.curves, mated=True), "Mated score distributions per group"))
    return parts


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def _cell(r: Rate) -> str:
    return rate_text(r, flag="<span class='nr'>not resolved</span>")


def _boot(r: Rate) -> str:
    if math.isnan(r.boot_low):
        return "-"
    return f"{r.boot_low:.2g} to {r.boot_high:.2g}"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _det_svg(curves: list[Curve], w: int = 520, h: int = 380) -> str:
    left, bottom, top, right = 60, 40, 20, 130
    lo_x, hi_x, lo_y, hi_y = -6.0, 0.0, -4.0, 0.0

    def px(x: float, y: float) -> tuple[float, float]:
        fx = (math.log10(max(x, 10**lo_x)) - lo_x) / (hi_x - lo_x)
        fy = (math.log10(max(y, 10**lo_y)) - lo_y) / (hi_y - lo_y)
        return left + fx * (w - left - right), h - bottom - fy * (h - bottom - top)

    out = [f"<svg class='plot det' xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img'>",
           f"<rect x='{left}' y='{top}' width='{w - left - right}' height='{h - top - bottom}' fill='none' stroke='#999'/>"]
    for e in range(int(lo_x), int(hi_x) + 1):
        x, _ = px(10.0**e, 1)
        out.append(f"<text x='{x:.1f}' y='{h - bottom + 15}' font-size='10' text-anchor='middle'>1e{e}</text>")
    for e in range(int(lo_y), int(hi_y) + 1):
        _, y = px(1, 10.0**e)
        out.append(f"<text x='{left - 5}' y='{y + 3:.1f}' font-size='10' text-anchor='end'>1e{e}</text>")
    out.append(f"<text x='{(w - right + left) / 2}' y='{h - 5}' font-size='11' text-anchor='middle'>false match rate</text>")
    out.append(f"<text x='12' y='{h / 2}' font-size='11' transform='rotate(-90 12 {h / 2})' text-anchor='middle'>false non-match rate</text>")
    for i, c in enumerate(curves):
        pts = [px(f, n) for f, n in zip(c.fmr, c.fnmr) if not (math.isnan(f) or math.isnan(n)) and f > 0]
        if pts:
            colour = PALETTE[i % len(PALETTE)]
            out.append(f"<polyline class='curve' fill='none' stroke='{colour}' stroke-width='1.6' points='"
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "'/>")
            out.append(f"<text x='{w - right + 8}' y='{top + 14 * (i + 1)}' font-size='11' fill='{colour}'>{html.escape(c.group)}</text>")
    out.append("</svg>")
    return "".join(out)


def _hist_svg(curves: list[Curve], mated: bool, w: int = 520, h: int = 260) -> str:
    left, bottom, top, right = 40, 30, 15, 130
    out = [f"<svg class='plot hist' xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img'>",
           f"<rect x='{left}' y='{top}' width='{w - left - right}' height='{h - top - bottom}' fill='none' stroke='#999'/>"]
    dens = []
    for c in curves:
        counts = c.mated_hist if mated else c.nonmated_hist
        total = sum(counts) or 1
        dens.append([k / total for k in counts])
    peak = max((max(d) for d in dens if d), default=1) or 1
    for i, (c, d) in enumerate(zip(curves, dens)):
        n = len(d)
        xs = [left + (j + 0.5) / n * (w - left - right) for j in range(n)]
        ys = [h - bottom - v / peak * (h - top - bottom) for v in d]
        colour = PALETTE[i % len(PALETTE)]
        out.append(f"<polyline class='curve' fill='none' stroke='{colour}' stroke-width='1.4' points='"
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys)) + "'/>")
        out.append(f"<text x='{w - right + 8}' y='{top + 14 * (i + 1)}' font-size='11' fill='{colour}'>{html.escape(c.group)}</text>")
    if curves:
        out.append(f"<text x='{left}' y='{h - 8}' font-size='10'>{curves[0].bins[0]:.3g}</text>")
        out.append(f"<text x='{w - right}' y='{h - 8}' font-size='10' text-anchor='end'>{curves[0].bins[-1]:.3g}</text>")
    out.append("</svg>")
    return "".join(out)
