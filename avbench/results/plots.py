"""Figures from the results store (matplotlib, written as PNG and SVG).

- ``metric_bars``: a metric per method and dataset, with bars of the 95 % CI of the mean over seeds (Student's t);
- ``beta_curve``: S versus U over the β grid for one result (the test curve, the
  β chosen on validation marked);
- ``val_per_epoch``: validation HM per stage-1 epoch for one run (best epoch marked).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avbench.errors import DataError
from avbench.results.leaderboard import DATASET_TITLES, Board
from avbench.results.stats import CI_NAME


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: str | Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out_dir / f"{stem}.{ext}"
        fig.savefig(p, dpi=150, bbox_inches="tight")
        paths.append(p)
    _plt().close(fig)
    return paths


def metric_bars(boards: list[Board], out_dir: str | Path) -> list[Path]:
    plt = _plt()
    paths = []
    for i, b in enumerate(boards):
        if not b.cells:
            continue
        methods = [m for m in b.methods if any((m, d) in b.cells for d in b.datasets)]
        width = 0.8 / max(len(b.datasets), 1)
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(methods) * max(1, len(b.datasets)) * 0.6), 4))
        x = np.arange(len(methods))
        for j, d in enumerate(b.datasets):
            means = [b.cells[(m, d)].mean if (m, d) in b.cells else np.nan for m in methods]
            cells = [b.cells.get((m, d)) for m in methods]  # one seed or none: no CI bar
            lo = [c.mean - c.ci_low if c is not None and c.n > 1 else 0 for c in cells]
            hi = [c.ci_high - c.mean if c is not None and c.n > 1 else 0 for c in cells]
            ax.bar(x + (j - (len(b.datasets) - 1) / 2) * width, means, width, yerr=[lo, hi], capsize=3,
                   label=DATASET_TITLES.get(d, d))
        ax.set_xticks(x, methods, rotation=30, ha="right")
        ax.set_ylabel(f"{b.metric} (×100)")
        ax.set_title(f"{b.metric}, {CI_NAME} over seeds\n{b.protocol} · {b.features} · text {b.text_order}",
                     fontsize=10)
        ax.legend(fontsize=8)
        stem = f"{b.metric.lower()}_{b.protocol}_{b.features}_{b.text_order}" if len(boards) > 1 else b.metric.lower()
        paths += _save(fig, out_dir, stem)
    if not paths:
        raise DataError("no results to plot (the store has none matching)")
    return paths


def _run_title(row: dict) -> str:
    return f"result {row['id']}: {row['method']} on {row['dataset']}-{row['features']}, seed {row['seed']}"


def beta_curve(row: dict, out_dir: str | Path) -> list[Path]:
    curve = (row.get("details") or {}).get("beta_curve") or {}
    if not curve.get("beta"):
        raise DataError(f"result {row['id']}: no β curve stored")
    plt = _plt()
    S, U = np.asarray(curve["S"]) * 100, np.asarray(curve["U"]) * 100
    betas = np.asarray(curve["beta"])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(U, S, "-o", ms=3)
    for k in (0, len(betas) - 1):
        ax.annotate(f"β={betas[k]:.1f}", (U[k], S[k]), fontsize=8)
    chosen = int(np.argmin(np.abs(betas - row["beta"])))
    ax.plot([U[chosen]], [S[chosen]], "r*", ms=12, label=f"β={row['beta']:.2f} (chosen on validation)")
    ax.set_xlabel("U (×100)")
    ax.set_ylabel("S (×100)")
    ax.set_title(_run_title(row), fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, f"beta_curve_{row['id']}")


def val_per_epoch(row: dict, out_dir: str | Path) -> list[Path]:
    stage1 = (row.get("details") or {}).get("stage1") or []
    if not stage1:
        raise DataError(f"result {row['id']}: no stage-1 history stored")
    plt = _plt()
    ep = [e["epoch"] for e in stage1]
    hm = [100 * e["val"]["HM"] for e in stage1]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(ep, hm, "-o", ms=3, label="validation HM")
    ax.axvline(row["best_epoch"], color="r", ls="--", label=f"best epoch {row['best_epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation HM (×100)")
    ax.set_title(_run_title(row), fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, f"val_hm_{row['id']}")


def cd_diagrams(boards: list[Board], out_dir: str | Path) -> list[Path]:
    """A critical-difference diagram per table with ≥ 3 methods on ≥ 2 shared datasets.

    Mean ranks across datasets (rank 1 = best per dataset); methods joined by a bar are
    not significantly different by the Nemenyi test after a Friedman test
    (``results.stats.critical_difference``, drawn by scikit-posthocs).
    """
    import scikit_posthocs as sp

    from avbench.results.stats import critical_difference

    plt = _plt()
    paths, reasons = [], []
    for b in boards:
        scores: dict[str, dict[str, float]] = {}
        for (m, d), c in b.cells.items():
            scores.setdefault(m, {})[d] = c.mean
        try:
            cd = critical_difference(scores)
        except ValueError as e:
            reasons.append(f"{b.title}: {e}")
            continue
        fig, ax = plt.subplots(figsize=(7, 0.6 + 0.35 * len(cd["mean_rank"])))
        sp.critical_difference_diagram(cd["mean_rank"], cd["nemenyi"], ax=ax)
        title = (f"{b.metric}: mean rank over {len(cd['datasets'])} datasets ({', '.join(cd['datasets'])}); "
                 f"Friedman p = {cd['friedman_p']:.3g}; bars: Nemenyi p ≥ 0.05\n"
                 f"{b.protocol} · {b.features} · text {b.text_order}")
        if cd["dropped"]:
            title += f"\nleft out (missing a dataset): {', '.join(cd['dropped'])}"
        ax.set_title(title, fontsize=8)
        stem = f"cd_{b.metric.lower()}_{b.protocol}_{b.protocol_mode}_{b.features}_{b.text_order}"
        paths += _save(fig, out_dir, stem)
    if not paths:
        raise DataError("no critical-difference diagram to draw: " + ("; ".join(reasons) or "the store has no results"))
    return paths
