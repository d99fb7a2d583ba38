"""The leaderboard's statistics, from maintained libraries (scipy, statsmodels, scikit-posthocs).

- :func:`mean_ci`: the 95 % confidence interval of a cell's mean over its seeds,
  Student's t with n − 1 degrees of freedom (``scipy.stats.t``). Not a bootstrap: with
  the 2–10 seeds of a cell a percentile bootstrap covers the true mean far less often
  than it says (2000 simulated draws of normal seeds: 50 % of its intervals held the
  true mean at n = 2, where it is the [min, max] of the two values, 75 % at n = 3, 85 %
  at n = 5, 90 % at n = 10), while the t interval held it 95 % of the time at each n.
  One seed has no interval.
- :func:`ranks`: rank 1 = best, ties share their average rank (``scipy.stats.rankdata``).
- :func:`versus_best`: per dataset, which methods are not significantly different
  from the best one. Each method's seeds are compared with the best method's seeds by
  Welch's two-sided t-test (unequal variances, fit for the 3–10 seeds of a leaderboard
  cell), and the k − 1 p-values of a dataset are corrected for multiple comparisons by
  Holm's step-down method (``statsmodels.stats.multitest.multipletests``).
- :func:`critical_difference`: across datasets, the Friedman test on the methods' ranks
  and the Nemenyi post-hoc test (``scikit_posthocs.posthoc_nemenyi_friedman``), the input
  of a critical-difference diagram (Demšar, JMLR 2006).
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.05
TEST_NAME = "Welch's t-test vs the best, Holm-corrected, α = 0.05"
CI_NAME = "95% CI of the mean (Student's t, n − 1 df)"


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """``level`` confidence interval of the mean of ``values`` (seeds): mean ± t(n − 1)·s/√n.

    NaN for fewer than 2 values (no spread to estimate); the mean itself when all are equal."""
    from scipy.stats import t

    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean, sem = float(values.mean()), float(values.std(ddof=1) / np.sqrt(n))
    if sem == 0.0:
        return mean, mean
    half = float(t.ppf(0.5 + level / 2, n - 1) * sem)
    return mean - half, mean + half


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 = best (highest); ties share their average rank."""
    from scipy.stats import rankdata

    names = list(scores)
    r = rankdata([-scores[m] for m in names], method="average")
    return {m: float(x) for m, x in zip(names, r)}


def versus_best(samples: dict[str, np.ndarray]) -> dict[str, tuple[str, float | None]]:
    """For each method: ``(mark, adjusted p)`` with mark one of

    - ``best``: the highest mean;
    - ``tied``: not significantly different from the best (Holm-adjusted p ≥ α);
    - ``worse``: significantly below the best;
    - ``untested``: fewer than 2 seeds on either side (no variance to test with).
    """
    from scipy.stats import ttest_ind
    from statsmodels.stats.multitest import multipletests

    if not samples:
        return {}
    means = {m: float(np.mean(v)) for m, v in samples.items()}
    best = max(sorted(means), key=lambda m: means[m])
    out: dict[str, tuple[str, float | None]] = {best: ("best", None)}
    b = np.asarray(samples[best], dtype=np.float64)
    by_n: dict[int, list[str]] = {}  # methods with as many seeds are tested in one vectorised call
    for m, v in samples.items():
        if m == best:
            continue
        if len(v) < 2 or len(b) < 2:
            out[m] = ("untested", None)
        else:
            by_n.setdefault(len(v), []).append(m)
    tested, pvals = [], []
    for n, names in by_n.items():
        a = np.stack([np.asarray(samples[m], dtype=np.float64) for m in names])
        with np.errstate(all="ignore"):
            p = np.atleast_1d(ttest_ind(a, b[None, :], axis=1, equal_var=False).pvalue)
        for m, row, pm in zip(names, a, p):
            if np.ptp(row) == 0 and np.ptp(b) == 0:  # no spread at all: the t statistic is undefined
                pm = 1.0 if row[0] == b[0] else 0.0
            tested.append(m)
            pvals.append(float(pm))
    if tested:
        import gc

        gc.freeze()  # multipletests(method="holm") runs gc.collect(): keep it from walking a large heap
        try:
            _, adjusted, _, _ = multipletests(pvals, alpha=ALPHA, method="holm")
        finally:
            gc.unfreeze()
        for m, p in zip(tested, adjusted):
            out[m] = ("tied" if p >= ALPHA else "worse", float(p))
    return out


def critical_difference(scores: dict[str, dict[str, float]]) -> dict:
    """Friedman + Nemenyi over datasets (blocks) for methods present on every dataset.

    ``scores``: method -> dataset -> mean metric (higher is better). Returns the mean
    ranks, the Nemenyi p-value matrix (a pandas DataFrame), the Friedman p-value, the
    datasets used and the methods left out for missing a dataset.
    """
    import pandas as pd
    import scikit_posthocs as sp
    from scipy.stats import friedmanchisquare

    datasets = sorted({d for per in scores.values() for d in per})
    complete = sorted(m for m, per in scores.items() if all(d in per for d in datasets))
    dropped = sorted(set(scores) - set(complete))
    if len(datasets) < 2 or len(complete) < 3:
        raise ValueError(
            f"a critical-difference diagram needs at least 3 methods with results on the same 2 or more datasets "
            f"(here {len(complete)} methods on {len(datasets)} datasets)"
        )
    table = pd.DataFrame({m: [scores[m][d] for d in datasets] for m in complete}, index=datasets)
    rank_table = table.apply(lambda row: pd.Series(ranks(row.to_dict())), axis=1)
    friedman_p = float(friedmanchisquare(*[table[m].to_numpy() for m in complete]).pvalue)
    # Nemenyi on the block design: rows are datasets (blocks), columns methods; it ranks within rows,
    # highest best, so pass the negated scores
    nemenyi = sp.posthoc_nemenyi_friedman(-table.to_numpy())
    nemenyi.index = nemenyi.columns = complete
    return {
        "mean_rank": rank_table.mean(axis=0).to_dict(),
        "nemenyi": nemenyi,
        "friedman_p": friedman_p,
        "datasets": datasets,
        "dropped": dropped,
    }
