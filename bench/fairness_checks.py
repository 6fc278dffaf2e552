"""Issue 9's figures for the shipped scorings (score_normalisation none vs cohort), the plain one
as the baseline in the same run. Labels are read here, to measure, and never by the scorings.

Split: the calibration's (images by SHA-256 of their dataset-relative name); the shipped
normaliser and both calibrations were fitted on the fit half only.
1. FairFace held-out half (6,104 images, 18.6M pairs), through the audit: per group, the observed
   within-group FMR at the threshold each calibration states for 1e-3 and 1e-4 (over the stated
   rate), and Max/GeoMean and max/min at one global threshold per scoring, with subject-bootstrap
   95% intervals and what equal groups would read (the audit's null), checked against a label
   permutation: the groups' labels shuffled among the images, sizes kept.
2. LFW held-out half with the shipped normaliser: View 2 10-fold accuracy over the pairs whose two
   images are held out, TAR at FMR 1e-3 over every held-out mated and non-mated pair, and women's
   and men's FMR and FNMR at that global threshold (Afifi & Abdelhamed's gender labels), the gaps
   with identity-bootstrap intervals and what equal groups would read (FMR also with each pair of
   people once, through the audit); and each sex's FNMR at its
   own threshold for FMR 1e-3 and 1e-4 (the same FMR for both: how well each sex's pairs rank).
   FNMR both by pair and by person (each person, and each pair of people, once: LFW's mated pairs
   per person run from 1 to tens of thousands), and each sex's misses split by LFW's annotated race
   (866 people); and FMR and FNMR by that race annotation at the global threshold.
3. All of LFW with a normaliser refitted on FairFace's fit half alone (LFW wholly outside its data):
   the same figures over all of LFW (--no-strict skips it).

    .venv/bin/python bench/fairness_checks.py [--resamples 200] [--no-strict] [--fairface-only | --lfw-only]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from faceledger import Settings
from faceledger.evaluation.audit import Scores, audit, bootstrap, differential_text, rate_text, rates_at, subject_rate_text, threshold_for_fmr
from faceledger.evaluation.audit_compare import side_by_side_markdown
from faceledger.evaluation.audit_images import _lfw_gender, _lfw_race
from faceledger.evaluation.calibration_fit import MATCH_FMR, in_fit_half
from faceledger.evaluation.datasets import LFW, FairFace
from faceledger.models.registry import model_id
from faceledger.evaluation.protocols import acquire, ten_fold
from faceledger.scoring.normalisation import fit, pair_scores
from faceledger.scoring.scoring import Scoring


def load_templates(settings: Settings):
    """FairFace's and LFW's templates with the calibration's split: FairFace vectors, fit flags
    and race x gender labels (measurement only); LFW, its (name, path) images with a face, vectors
    and fit flags."""
    ff = FairFace.locate(settings)
    recs = ff.records()
    got = acquire([r.path for r in recs], settings, prealigned=True)
    ffv = np.stack([got[r.path].vector for r in recs]).astype(np.float32)
    ff_fit = np.array([in_fit_half(r.path.relative_to(ff.root).as_posix()) for r in recs])
    groups = np.array([f"{r.race} {r.gender}" for r in recs])  # measurement only
    lfw = LFW.locate(settings)
    imgs = [(n, path) for n, ps in sorted(lfw.people().items()) for path in ps]
    got = acquire([path for _, path in imgs], settings, expected=LFW.expected_face)
    imgs = [(n, path) for n, path in imgs if got[path].vector is not None]
    lv = np.stack([got[path].vector for _, path in imgs]).astype(np.float32)
    l_fit = np.array([in_fit_half(n) for n, _ in imgs])  # by person, as calibration_fit splits
    return ffv, ff_fit, groups, lfw, imgs, lv, l_fit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--resamples", type=int, default=200)
    p.add_argument("--no-strict", action="store_true", help="Skip part 3 (the FairFace-only refit).")
    p.add_argument("--fairface-only", action="store_true", help="Part 1 alone.")
    p.add_argument("--lfw-only", action="store_true", help="Parts 2 and 3 alone.")
    args = p.parse_args()
    t0 = time.perf_counter()
    settings = Settings.load()
    model = str(model_id(settings))
    scorings = {"cosine": Scoring.of(model, "none"), "cohort-normalised": Scoring.of(model, "cohort")}
    ffv, ff_fit, groups, lfw, imgs, lv, l_fit = load_templates(settings)
    print(f"templates: FairFace {len(ffv):,} (fit half {ff_fit.sum():,}), LFW {len(imgs):,} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    if not args.lfw_only:
        fairface_part(args, scorings, ffv[~ff_fit], groups[~ff_fit])
        print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.fairface_only:
        return
    lfw_part("LFW held-out half, shipped scorings", lfw, imgs, lv, ~l_fit,
             {n: sc.normaliser for n, sc in scorings.items()}, own_resamples=args.resamples)
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if not args.no_strict:
        ff_only = fit("bench", ffv[ff_fit], np.array([f"ff{k}" for k in np.flatnonzero(ff_fit)]),
                      match_cosine=scorings["cosine"].calibration.threshold_for_fmr(MATCH_FMR))  # the shipped rule
        lfw_part("all of LFW, normaliser refitted on FairFace's fit half only", lfw, imgs, lv,
                 np.ones(len(imgs), bool), {"cosine": None, "normalised (FairFace-only)": ff_only})
    print(f"\n{time.perf_counter() - t0:.0f} s")


def fairface_part(args, scorings, held, g) -> None:
    names = sorted(set(g))
    codes = np.array([names.index(x) for x in g], np.int16)
    i, j = np.triu_indices(len(held), 1)
    reports, floors = {}, {}
    for name, sc in scorings.items():
        s = Scores(pair_scores(held, i, j, sc.normaliser), np.zeros(len(i), bool), codes[i], codes[j], names,
                   i.astype(np.int32), j.astype(np.int32))  # every image its own subject
        reports[name] = audit(s, targets=(1e-3, 1e-4), resamples=args.resamples, calibration=sc.calibration,
                              every_group=True)  # the differentials: over all 14 groups
        floors[name] = [permutation_floor(s, p.threshold) for p in reports[name].points if p.name.startswith("global")]
        del s
    print(f"\n== FairFace held-out half: {len(held):,} images, {len(i):,} pairs\n")
    print(side_by_side_markdown(reports, "Each scoring with its own shipped calibration; intervals: 95%, Wilson for "
                                "the ratios to the stated rate, subject bootstrap for the differentials."))
    for name, r in reports.items():
        for p in r.points:
            if p.name.startswith("calibrated"):
                ratios = np.array([x.fmr.rate / p.target_fmr for x in p.groups])
                inside = int(((ratios >= 0.5) & (ratios <= 2)).sum())
                print(f"{name}: {p.name}: observed/stated {ratios.min():.2f}..{ratios.max():.2f}, within 2x {inside}/14")
        for p, (median, p95) in zip([p for p in r.points if p.name.startswith("global")], floors[name]):
            null = p.differential_null.get("fmr_max_geomean", [np.nan, np.nan])
            print(f"{name}: {p.name}: Max/GeoMean {p.differentials['fmr_max_geomean']:.2f}; equal groups would read "
                  f"{null[0]:.2f}, up to {null[1]:.2f} (audit's null); labels shuffled: {median:.2f}, up to {p95:.2f}")


def permutation_floor(s: Scores, threshold: float, reps: int = 40, seed: int = 0) -> tuple[float, float]:
    """Max/GeoMean over within-group pairs with the images' group labels shuffled (every pair is
    scored here, so each shuffle has its within-group pairs): median and 95th percentile."""
    rng = np.random.default_rng(seed)
    n_images = int(max(s.subject_a.max(), s.subject_b.max())) + 1
    label = np.zeros(n_images, np.int16)
    label[s.subject_a], label[s.subject_b] = s.group_a, s.group_b
    match = s.score >= threshold
    out = []
    for _ in range(reps):
        shuffled = rng.permutation(label)
        ga, gb = shuffled[s.subject_a], shuffled[s.subject_b]
        same = ga == gb
        rates = np.bincount(ga[same & match], minlength=len(s.names)) / np.bincount(ga[same], minlength=len(s.names))
        with np.errstate(divide="ignore"):  # a group without a false match: unbounded
            out.append(rates.max() / np.exp(np.log(rates).mean()))
    return tuple(float(x) for x in np.percentile(out, [50, 95], method="nearest"))


def sex_fnmr(score, mated, sex, person, li, lj, rows, resamples: int = 0, seed: int = 0):
    """Each sex's FNMR at each row's threshold. A row is ("global", t): one threshold for both
    sexes; or ("own", fmr): each sex's own threshold for that FMR, set on its within-sex non-mated
    pairs, so both sexes sit at the same FMR and the gap is how well the scores rank each sex's
    pairs, not where one threshold falls. Two weightings: by pair (how LFW's rates are usually
    read; one person with 300 mated pairs counts 300 times) and by person, on both sides: a mated
    pair weighs one over its person's mated pairs, a non-mated pair one over the product of its two
    people's images (every person, and every pair of people, counts once), so own thresholds are
    set by person too. With ``resamples``, 95% intervals of women's FNMR over men's for both, from
    a bootstrap over identities (a resampled person's pairs count as often as they are drawn).
    Returns [(row, {weighting: (women, men)}, {weighting: interval or None}, by-pair (women's cut,
    men's))]: a mated pair at or below its sex's cut is a miss."""
    cells = []
    pairs_of = np.bincount(person[li[mated]], minlength=person.max() + 1).astype(np.float64)
    images_of = np.bincount(person).astype(np.float64)
    for c in (0, 1):
        same = (sex[li] == c) & (sex[lj] == c)
        nm, m = np.flatnonzero(same & ~mated), np.flatnonzero(same & mated)
        order = nm[np.argsort(-score[nm], kind="stable")]
        base_n = (np.ones(len(order)), 1.0 / (images_of[person[li[order]]] * images_of[person[lj[order]]]))
        base_m = (np.ones(len(m)), 1.0 / pairs_of[person[li[m]]])
        cells.append((order, score[order], m, score[m], base_n, base_m))
    weightings = ("pair", "person")

    def fnmrs(w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, weightings, 2) FNMR and (rows, weightings, 2) cut, pairs weighted by their people's draws."""
        out, cut = np.empty((len(rows), 2, 2)), np.empty((len(rows), 2, 2))
        for c, (order, desc, m, genuine, base_n, base_m) in enumerate(cells):
            drawn_n = 1.0 if w is None else w[person[li[order]]] * w[person[lj[order]]]
            drawn_m = 1.0 if w is None else w[person[li[m]]]
            for x in range(len(weightings)):
                wm, cum = base_m[x] * drawn_m, None
                for k, (kind, value) in enumerate(rows):
                    if kind == "global":  # a match is score >= value: as a cut, the float just below it
                        t = np.nextafter(value, -np.inf)
                    else:  # calibration.threshold_desc's rank rule, weighted: the pairs whose weight
                        # stays within the target may match, the next score and below may not
                        if cum is None:
                            cum = np.cumsum(base_n[x] * drawn_n)
                        t = desc[min(np.searchsorted(cum, value * cum[-1], side="right"), len(desc) - 1)]
                    cut[k, x, c] = t
                    out[k, x, c] = wm[genuine <= t].sum() / wm.sum() if wm.sum() else np.nan
        return out, cut

    point, cuts = fnmrs(None)
    intervals = np.full((len(rows), 2, 2), np.nan)
    if resamples:
        rng = np.random.default_rng(seed)
        people = person.max() + 1
        ratios = []
        for _ in range(resamples):
            f = fnmrs(np.bincount(rng.integers(people, size=people), minlength=people).astype(np.float64))[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios.append(f[..., 0] / f[..., 1])
        intervals = np.moveaxis(np.percentile(np.array(ratios), [2.5, 97.5], axis=0), 0, -1)
    return [(row, {x: tuple(float(v) for v in point[k, n]) for n, x in enumerate(weightings)},
             {x: (tuple(float(v) for v in intervals[k, n]) if resamples else None) for n, x in enumerate(weightings)},
             tuple(float(v) for v in cuts[k, 0])) for k, row in enumerate(rows)]


def misses_by_race(score, m, person, li, race, pairs_of, cut) -> str:
    """One sex's misses among its mated pairs ``m`` at or below ``cut`` (the threshold set by
    pair), split by the people's annotated race (LFW's 866-person labels; the rest "unlabelled"):
    the FNMR of each race's mated pairs, and with each of its people counted once (``pairs_of``:
    mated pairs per person)."""
    out = []
    for r in sorted(set(race[person[li[m]]]), key=lambda r: (r == "unlabelled", r)):
        k = m[race[person[li[m]]] == r]
        miss = score[k] <= cut
        w = 1.0 / pairs_of[person[li[k]]]
        out.append(f"{r} {100 * miss.mean():.2f}% of {len(k):,} pairs, {100 * (w * miss).sum() / w.sum():.2f}% "
                   f"of {len(set(person[li[k]])):,} people")
    return "; ".join(out)


def lfw_part(title, lfw, imgs, lv, keep, normalisers, own_resamples: int = 0) -> None:
    """10-fold, TAR at FMR 1e-3 and the gender gaps over the ``keep`` images: at the one global
    threshold, and (FNMR) at each sex's own threshold for the same FMR."""
    idx = np.flatnonzero(keep)
    v = lv[idx]
    index = {imgs[k][1]: n for n, k in enumerate(idx)}
    gender_of = _lfw_gender(lfw)
    sexes = ("female", "male")
    gender = np.array([sexes.index(gender_of[imgs[k][1].name]) if imgs[k][1].name in gender_of else -1 for k in idx])
    people, person = np.unique(np.array([imgs[k][0] for k in idx]), return_inverse=True)  # codes: 87M pairs of names won't fit
    race_of = _lfw_race(lfw)
    race = np.array([race_of.get(n, "unlabelled") for n in people])  # per person code; measurement only
    li, lj = np.triu_indices(len(v), 1)
    mated = person[li] == person[lj]
    mated_of = [np.flatnonzero((gender[li] == c) & (gender[lj] == c) & mated) for c in (0, 1)]  # per sex
    pairs_of = np.bincount(person[li[mated]], minlength=len(people))
    folds_pairs = [[(index.get(p.a), index.get(p.b), p.mated) for p in fold] for fold in lfw.pairs()]
    folds_pairs = [[x for x in fold if x[0] is not None and x[1] is not None] for fold in folds_pairs]
    print(f"\n== {title}: {len(v):,} images, {int(mated.sum()):,} mated and {int((~mated).sum()):,} non-mated pairs; "
          f"View 2 pairs with both images here: {sum(map(len, folds_pairs)):,}")
    for label, normaliser in normalisers.items():
        scores = pair_scores(v, li, lj, normaliser)
        t = threshold_for_fmr(scores[~mated], 1e-3)  # a match is score >= t
        tar = float(np.mean(scores[mated] >= t))
        folds = []
        for fold in folds_pairs:
            a = np.array([x[0] for x in fold])
            b = np.array([x[1] for x in fold])
            s = pair_scores(v, a, b, normaliser)
            folds.append([(float(x), m) for x, (_, _, m) in zip(s, fold)])
        acc = np.array([f.accuracy for f in ten_fold(folds)])
        labelled = (gender[li] >= 0) & (gender[lj] >= 0)
        s = Scores(scores[labelled], mated[labelled], gender[li][labelled].astype(np.int16),
                   gender[lj][labelled].astype(np.int16), list(sexes), person[li][labelled], person[lj][labelled])
        point = rates_at(s, t, 1e-3, "global FMR 1e-3", every_group=True)  # the threshold set on every pair
        bootstrap(s, [point], resamples=200)  # over identities: one person's pairs are not independent
        del s
        cells = [f"{g.group}: FMR {g.fmr.rate:.2e} ({g.fmr.ci_low:.1e}..{g.fmr.ci_high:.1e}), each pair of people once "
                 f"{subject_rate_text(g, 'fmr_by_subject')}; FNMR {100 * g.fnmr.rate:.2f}% "
                 f"({100 * g.fnmr.ci_low:.2f}..{100 * g.fnmr.ci_high:.2f}; {g.fnmr.trials:,} mated pairs)" for g in point.groups]
        cells += [f"{label} max/min {differential_text(point, f'{kind}_max_min_ratio')}" for kind, label
                  in (("fmr", "FMR"), ("fnmr", "FNMR"), ("fmr_by_subject", "FMR, each pair of people once,"))]
        rows = [("global", t), ("own", 1e-3), ("own", 1e-4)]
        for (kind, value), point_, ci, cuts in sex_fnmr(scores, mated, gender, person, li, lj, rows,
                                                                 resamples=own_resamples):
            where = "the global FMR 1e-3 threshold" if kind == "global" else f"each sex's own FMR {value:g} threshold"
            cells.append(f"FNMR at {where}: " + "; ".join(
                f"by {x}, women {100 * f:.2f}% men {100 * m:.2f}%, {f / m:.2f}x"
                + (f" ({ci[x][0]:.2f} to {ci[x][1]:.2f}, identity bootstrap)" if ci[x] else "")
                for x, (f, m) in point_.items()))
            women = mated_of[0]
            missed = np.bincount(person[li[women[scores[women] <= cuts[0]]]], minlength=len(people))
            pairs = np.bincount(person[li[women]], minlength=len(people))
            cells.append("  women's misses there, most from: " + ", ".join(
                f"{people[p]} {missed[p]} of {pairs[p]}" for p in np.argsort(-missed, kind="stable")[:3]))
            for c, cut in enumerate(cuts):
                cells.append(f"  {sexes[c]} by annotated race: "
                             + misses_by_race(scores, mated_of[c], person, li, race, pairs_of, cut))
        cells += race_rates(scores, mated, person, li, lj, race, t)
        print(f"  {label}: 10-fold {100 * acc.mean():.2f}% +- {100 * acc.std(ddof=1):.2f}; TAR at FMR 1e-3 "
              f"{100 * tar:.2f}%\n     " + "\n     ".join(cells), flush=True)


def race_rates(scores, mated, person, li, lj, race, t, min_pairs: int = 1_000) -> list[str]:
    """FMR and FNMR by LFW's annotated race of the person at the global threshold ``t``, over
    pairs of two people of races with at least ``min_pairs`` within-race non-mated pairs here,
    through the audit (subject bootstrap; differentials over every such race, resolved or not):
    the FMR differential by race, beyond FairFace."""
    labelled = sorted(set(race) - {"unlabelled"})
    code = np.array([labelled.index(r) if r in labelled else -1 for r in race])
    ca, cb = code[person[li]], code[person[lj]]
    within = np.bincount(ca[(ca == cb) & (ca >= 0) & ~mated], minlength=len(labelled))
    names = [r for r, n in zip(labelled, within) if n >= min_pairs]
    code = np.array([names.index(r) if r in names else -1 for r in race])
    ca, cb = code[person[li]], code[person[lj]]
    both = (ca >= 0) & (cb >= 0)
    s = Scores(scores[both], mated[both], ca[both].astype(np.int16), cb[both].astype(np.int16), names,
               person[li[both]], person[lj[both]])
    point = rates_at(s, t, 1e-3, "global FMR 1e-3", every_group=True)
    bootstrap(s, [point], resamples=200)
    out = [f"by annotated race, {g.group}: FMR {rate_text(g.fmr)} in {g.fmr.trials:,} pairs (bootstrap "
           f"{g.fmr.boot_low:.1e}..{g.fmr.boot_high:.1e}), each pair of people once "
           f"{subject_rate_text(g, 'fmr_by_subject')}; FNMR {100 * g.fnmr.rate:.2f}% of {g.fnmr.trials:,} pairs, "
           f"each person once {subject_rate_text(g, 'fnmr_by_subject')}" for g in point.groups]
    for kind, label in (("fmr", "FMR"), ("fmr_by_subject", "FMR, each pair of people once,")):
        if f"{kind}_max_min_ratio" in point.differentials:
            out.append(f"by annotated race, {label} max/min {differential_text(point, f'{kind}_max_min_ratio')}")
    return out


if __name__ == "__main__":
    main()
