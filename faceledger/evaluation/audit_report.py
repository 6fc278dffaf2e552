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
        "figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:90%;color:#555}"
        # printed (the PDF export): A4, the side-by-side tables' many columns shrunk to fit the page
        "@page{size:A4;margin:12mm}@media print{body{max-width:none;margin:0;padding:0;font-size:10pt}"
        "table{font-size:7pt;width:100%}td,th{padding:2px 3px;overflow-wrap:anywhere}figure{break-inside:avoid}"
        "h1,h2,h3{break-after:avoid}}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]


def render_html(report: AuditReport, title: str = "Demographic audit", about: dict | None = None) -> str:
    """``about``: where the scores came from (an endpoint audit's protocol, calls, sample), for the
    plain-sentence summary and the methods section."""
    front = [] if about is None else _identification(about) + _summary(report, about) + _methods(report, about)
    return "\n".join(_head(title) + front + _body(report) + ["</body></html>"])


def render_html_side_by_side(reports: dict[str, AuditReport], title: str, note: str,
                             abouts: dict[str, dict] | None = None, front: list[str] | None = None) -> str:
    """One page: the side-by-side tables (audit_compare.py), then each system's full report; with
    ``abouts`` (an endpoint audit and the system compared with it), each with its summary, bars
    and methods, in its own units. ``front``: HTML placed before the tables (the searches' table)."""
    from faceledger.evaluation.audit_compare import side_by_side_rows

    parts = _head(title) + [f"<p>{html.escape(note)}</p>"] + list(front or [])
    for heading, header, rows in side_by_side_rows(reports):
        parts.append(f"<h2 class='side'>{html.escape(heading)}</h2><table class='side'><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    for k, (name, report) in enumerate(reports.items()):
        about = (abouts or {}).get(name)
        parts.append(f"<h1 id='system-{k + 1}'>Scores: {html.escape(name)}</h1>")
        own = ([] if about is None else _summary(report, about, anchor=f"-{k + 1}")
               + _methods(report, about, anchor=f"-{k + 1}")) + _body(report)
        parts += [x.replace("<h2", "<h3").replace("</h2>", "</h3>") for x in own]
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
        parts.append(f"<h2 id='{html.escape(_slug(p.name))}'>{html.escape(p.name)} (threshold {report.shown(p.threshold):.6g})</h2>")
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
        units = " (distances)" if report.direction == "distance" else ""
        parts.append(_figure(_det_svg(report.curves, report), "DET: false non-match rate against false match rate (log "
                             "scales), per group; each marker is an operating point, labelled with its threshold in "
                             f"the system's own units{units}"))
        parts.append(_figure(_hist_svg(report.curves, mated=False, shown=report.shown),
                             f"Non-mated score distributions per group{units}"))
        parts.append(_figure(_hist_svg(report.curves, mated=True, shown=report.shown),
                             f"Mated score distributions per group{units}"))
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


def _det_svg(curves: list[Curve], report: AuditReport | None = None, w: int = 520, h: int = 380) -> str:
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
    # the operating points on each group's curve, labelled with the threshold in the system's units
    colour_of = {c.group: PALETTE[i % len(PALETTE)] for i, c in enumerate(curves)}
    for p in (report.points if report is not None else []):
        labelled = False
        for g in p.groups:
            if g.group not in colour_of or not (g.fmr.trials and g.fnmr.trials):
                continue  # a rate of 0 sits on the axis' edge, as the curve's own zeros do
            x, y = px(g.fmr.rate, g.fnmr.rate)
            out.append(f"<circle class='op' cx='{x:.1f}' cy='{y:.1f}' r='3.5' fill='{colour_of[g.group]}' stroke='#222'>"
                       f"<title>{html.escape(g.group)}, {html.escape(p.name)}: threshold {report.shown(p.threshold):.4g}"
                       "</title></circle>")
            if not labelled:
                out.append(f"<text class='op-label' x='{x + 5:.1f}' y='{y - 5:.1f}' font-size='9'>"
                           f"{report.shown(p.threshold):.3g}</text>")
                labelled = True
    out.append("</svg>")
    return "".join(out)


def _hist_svg(curves: list[Curve], mated: bool, w: int = 520, h: int = 260, shown=lambda x: x) -> str:
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
        out.append(f"<text x='{left}' y='{h - 8}' font-size='10'>{shown(curves[0].bins[0]):.3g}</text>")
        out.append(f"<text x='{w - right}' y='{h - 8}' font-size='10' text-anchor='end'>{shown(curves[0].bins[-1]):.3g}</text>")
    out.append("</svg>")
    return "".join(out)


# --- the page people read: summary sentences, bars with intervals, methods -----------------------------

#: What each metric name means, printed beside the figures.
EXPLAINED = (("false match rate (FMR)", "the share of pairs of two different people that the system scored as the "
              "same person: the error that puts an innocent person in a candidate list"),
             ("false non-match rate (FNMR)", "the share of pairs of one person's two photos that it failed to match"),
             ("FPIR / FNIR", "the same two errors for a search of a gallery: a probe of someone not in the gallery "
              "returning anyone (false positive identification), a probe of someone in it not returning them"),
             ("95% interval", "the range the true rate lies in with 95% confidence, given how few errors the sample "
              "holds; a rate 'not resolved' had too few pairs to be stated at all"))


def _extreme(point, kind: str):
    rated = [g for g in point.groups if getattr(g, kind).trials]
    if len(rated) < 2:
        return None
    hi = max(rated, key=lambda g: getattr(g, kind).rate)
    lo = min(rated, key=lambda g: getattr(g, kind).rate)
    return hi, lo


def _rate_words(r: Rate) -> str:
    return (f"{r.errors:,} of {r.trials:,} pairs, {r.rate:.2g} (95% interval {r.ci_low:.2g} to {r.ci_high:.2g})")


def summary_sentences(report: AuditReport) -> list[tuple[str, str]]:
    """(sentence, the figures behind it) for each operating point: the group most often falsely
    matched against the least, and the same for missed matches."""
    out = []
    for p in report.points:
        where = (f"At the system's threshold {report.shown(p.threshold):g}" if p.name.startswith("threshold")
                 else f"At the threshold where {p.target_fmr:g} of all non-mated pairs match ({report.shown(p.threshold):.4g})")
        for kind, what, units in (("fmr", "falsely matched", "non-mated"), ("fnmr", "missed", "mated")):
            pair = _extreme(p, kind)
            if pair is None:
                continue
            hi, lo = pair
            rh, rl = getattr(hi, kind), getattr(lo, kind)
            if rh.errors == 0:
                out.append((f"{where}, no {units} pair of any group was {what}.",
                            f"{hi.group}: at most {rh.ci_high:.2g}; {lo.group}: at most {rl.ci_high:.2g}"))
                continue
            key = f"{kind}_max_min_ratio"
            ci = p.differential_ci.get(key)
            if rl.errors == 0:
                text = (f"{where}, {units} pairs of {hi.group} were {what} {rh.errors:,} times in {rh.trials:,}; "
                        f"those of {lo.group} never (at most {rl.ci_high:.2g}), so no ratio can be stated.")
            else:
                ratio = rh.rate / rl.rate
                text = (f"{where}, {units} pairs of {hi.group} were {what} {ratio:.2g} times as often as those of "
                        f"{lo.group}" + (f" (95% interval of the ratio {ci[0]:.2g} to {ci[1]:.2g})" if ci and len(p.groups) == 2
                                         and all(map(math.isfinite, ci)) else "") + ".")
            if not (rh.resolved and rl.resolved):
                text += " The sample is too small to resolve these rates: read them as bounds."
            out.append((text, f"{hi.group}: {_rate_words(rh)}; {lo.group}: {_rate_words(rl)}"))
    return out


def _summary(report: AuditReport, about: dict, anchor: str = "") -> list[str]:
    parts = [f"<h2 id='summary{anchor}'>Summary</h2><ul class='summary'>"]
    for sentence, figures in summary_sentences(report):
        parts.append(f"<li>{html.escape(sentence)}<br><small>{html.escape(figures)}</small></li>")
    parts.append("</ul>")
    parts.append("<dl class='terms'>" + "".join(f"<dt>{html.escape(a)}</dt><dd>{html.escape(b)}</dd>" for a, b in EXPLAINED)
                 + "</dl>")
    for p in report.points:
        parts.append(_figure(_bars_svg(p), f"{p.name}: per-group false match and false non-match rates (log scale) "
                             "with 95% intervals; a hollow bar is a rate the sample cannot resolve"))
    return parts


def _methods(report: AuditReport, about: dict, anchor: str = "") -> list[str]:
    plan = about.get("plan", {})
    rows = [("endpoint", about.get("endpoint")), ("protocol", about.get("protocol")), ("data", about.get("dataset")),
            ("calls", ", ".join(f"{k} {v:,}" for k, v in plan.get("calls", {}).items())),
            ("calls sent in the last run", about.get("calls_sent")), ("run time (s)", about.get("seconds")),
            ("calls per second", about.get("calls_per_second")),
            ("comparisons scored", f"{report.comparisons:,} ({report.mated:,} mated, {report.nonmated:,} non-mated)"),
            ("failures to acquire a face", about.get("failures_to_acquire")),
            ("censored scores (withheld by the endpoint)", about.get("censored_pairs")),
            ("operating points", "; ".join(f"{p.name} = {report.shown(p.threshold):.6g}" for p in report.points)),
            ("pairs only one of the compared systems scored (left out of both)", about.get("pairs_scored_by_one")),
            ("intervals", f"{report.interval} per rate; subject bootstrap of {report.resamples} resamples")]
    units = about.get("units", "the endpoint's own Similarity (0-100, higher means more alike)")
    parts = [f"<h2 id='methods{anchor}'>Methods</h2><table class='methods'>"]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows if v is not None]
    parts.append(f"</table><p>Scores are {html.escape(units)}, so thresholds "
                 "and curves are in its units. The groups are the dataset's annotations, never inferred from faces. "
                 "What the data cannot resolve: a rate below about 30 / (number of pairs) cannot be told from zero, "
                 "and differences between groups inside each other's intervals are not shown to exist.</p>")
    return parts


def _bars_svg(point, w: int = 560, h: int = 240) -> str:
    groups = point.groups
    left, bottom, top = 50, 60, 20
    panel = (w - left - 20) / 2
    lo_e, hi_e = -5, 0

    def py(v: float) -> float:
        f = (math.log10(min(max(v, 10.0**lo_e), 1.0)) - lo_e) / (hi_e - lo_e)
        return h - bottom - f * (h - bottom - top)

    out = [f"<svg class='plot bars' xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img'>"]
    for e in range(lo_e, hi_e + 1):
        out.append(f"<text x='{left - 4}' y='{py(10.0**e) + 3:.1f}' font-size='10' text-anchor='end'>1e{e}</text>")
    for k, (kind, label) in enumerate((("fmr", "false match rate"), ("fnmr", "false non-match rate"))):
        x0 = left + k * panel
        out.append(f"<rect x='{x0:.1f}' y='{top}' width='{panel - 10:.1f}' height='{h - top - bottom}' fill='none' stroke='#999'/>")
        out.append(f"<text x='{x0 + panel / 2:.1f}' y='{h - 8}' font-size='11' text-anchor='middle'>{label}</text>")
        step = (panel - 10) / max(1, len(groups))
        for i, g in enumerate(groups):
            r = getattr(g, kind)
            colour = PALETTE[i % len(PALETTE)]
            x = x0 + i * step + step * 0.2
            bw = step * 0.6
            if r.trials:
                y = py(r.rate) if r.rate > 0 else h - bottom
                fill = colour if r.resolved else "none"
                out.append(f"<rect class='bar' x='{x:.1f}' y='{y:.1f}' width='{bw:.1f}' height='{h - bottom - y:.1f}' "
                           f"fill='{fill}' stroke='{colour}'><title>{html.escape(g.group)} {label}: {rate_text(r)}</title></rect>")
                cx = x + bw / 2
                out.append(f"<line class='ci' x1='{cx:.1f}' x2='{cx:.1f}' y1='{py(max(r.ci_low, 1e-9)):.1f}' "
                           f"y2='{py(r.ci_high):.1f}' stroke='#222'/>")
            out.append(f"<text x='{x + bw / 2:.1f}' y='{h - bottom + 12}' font-size='9' text-anchor='middle'>"
                       f"{html.escape(g.group[:14])}</text>")
    out.append("</svg>")
    return "".join(out)


def _identification(about: dict) -> list[str]:
    """The ACLU-style table of an identification audit: per probe group and threshold, probes of
    people not in the gallery that returned anyone, and probes of people in it that missed them."""
    rates = about.get("identification")
    if not rates:
        return []
    full = max(r["gallery"] for r in rates)
    parts = ["<h2 id='identification'>Searches of the gallery</h2>",
             f"<p>{about.get('probes', 0):,} probes searched a gallery of {full:,} people. A false match is a probe of "
             "someone not in the gallery that returned anyone at or above the threshold; a miss, a probe of someone in "
             "the gallery that did not return them. The tables further down count only the candidates the endpoint "
             "returned" + (", and it withheld those under similarity "
                           f"{about['lowest_similarity_returned']:.3g} or so" if not about.get("complete_candidate_lists")
                           and about.get("lowest_similarity_returned") is not None else "") + ".</p>",
             "<table class='identification'><tr><th>probe group</th><th>gallery</th><th>threshold</th>"
             "<th>probes not in the gallery</th><th>falsely matched</th><th>FPIR (95% interval)</th>"
             "<th>probes in the gallery</th><th>missed</th><th>FNIR (95% interval)</th></tr>"]
    for r in sorted(rates, key=lambda r: (-r["gallery"], r["threshold"], r["group"])):
        def pct(x):
            if x is None or (isinstance(x, float) and math.isnan(x)):
                return "n/a"
            return "0%" if abs(x) < 1e-12 else f"{100 * x:.3g}%"
        parts.append(f"<tr><td>{html.escape(r['group'])}</td><td>{r['gallery']:,}</td><td>{r['threshold']:g}</td>"
                     f"<td>{r['nonmated_probes']:,}</td><td>{r['false_matched']:,}</td>"
                     f"<td>{pct(r['fpir'])} ({pct(r['fpir_ci'][0])} to {pct(r['fpir_ci'][1])})</td>"
                     f"<td>{r['mated_probes']:,}</td><td>{r['missed']:,}</td>"
                     f"<td>{pct(r['fnir'])} ({pct(r['fnir_ci'][0])} to {pct(r['fnir_ci'][1])})</td></tr>")
    parts.append("</table>")
    return parts


def render_html_identification(title: str, about: dict) -> str:
    """An identification audit whose returned candidates cannot support the pair tables (an
    endpoint that withheld every non-mated candidate): the searches' table and the methods."""
    return "\n".join(_head(title) + _identification(about) + _identification_methods(about) + ["</body></html>"])


def _identification_methods(about: dict, anchor: str = "") -> list[str]:
    rows = [(k, about.get(k)) for k in ("endpoint", "protocol", "dataset", "calls_sent", "seconds", "calls_per_second",
                                         "failures_to_acquire", "lowest_similarity_returned")]
    methods = [f"<h2 id='methods{anchor}'>Methods</h2><table class='methods'>"]
    methods += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows if v is not None]
    return methods + ["</table>"]


def render_html_identification_side_by_side(title: str, note: str, abouts: dict[str, dict]) -> str:
    """Endpoints searched with the same gallery and probes: their searches' tables side by side
    (endpoint_compare.identification_side_by_side), then each endpoint's own table and methods."""
    from faceledger.evaluation.endpoint_compare import identification_side_by_side

    header, rows = identification_side_by_side({n: a["identification"] for n, a in abouts.items()})
    parts = _head(title) + [f"<p>{html.escape(note)}</p>", "<h2 class='side'>Searches of the gallery, side by side</h2>"
                            "<table class='side'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows] + ["</table>"]
    for k, (name, about) in enumerate(abouts.items()):
        parts.append(f"<h1 id='system-{k + 1}'>Searches: {html.escape(name)}</h1>")
        parts += [x.replace("<h2", "<h3").replace("</h2>", "</h3>")
                  for x in _identification(about) + _identification_methods(about, anchor=f"-{k + 1}")]
    return "\n".join(parts + ["</body></html>"])
