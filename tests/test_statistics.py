"""Significance marks and the critical-difference diagram."""

import numpy as np
import pytest
from test_results import make_row

from avbench.cli import main
from avbench.errors import DataError
from avbench.results import leaderboard as lb
from avbench.results.formats import render
from avbench.results import plots
from avbench.results.stats import critical_difference, versus_best
from avbench.results.store import Store


def _rows(values_by_method, dataset="ucf"):
    return [make_row(m, dataset, s, float(v)) for m, vals in values_by_method.items() for s, v in enumerate(vals)]


def test_marks_two_indistinguishable_methods_and_one_clearly_worse():
    rng = np.random.default_rng(0)
    vals = {
        "a": 50 + rng.normal(0, 1.0, 5),
        "b": 49.6 + rng.normal(0, 1.0, 5),  # within noise of a
        "c": 30 + rng.normal(0, 1.0, 5),  # far below
    }
    (b,) = lb.compile_boards(_rows(vals))
    best = max(vals, key=lambda m: vals[m].mean())
    other = ({"a", "b"} - {best}).pop()
    assert b.cells[(best, "ucf")].significance == "best"
    assert b.cells[(other, "ucf")].significance == "tied" and "≈" in b.cells[(other, "ucf")].marks
    assert b.cells[("c", "ucf")].significance == "worse" and b.cells[("c", "ucf")].p_value < 0.001
    md = render([b], "md")
    assert "Welch" in md and "Holm" in md and md.count("≈") >= 2  # the mark and its footnote
    for fmt in ("tex", "html", "csv"):
        assert "Holm" in render([b], fmt)


def test_holm_correction_is_applied():
    # two methods each at raw p ≈ 0.03 against the best: Holm doubles the smaller p
    from scipy.stats import ttest_ind

    best = np.array([10.0, 11.0, 12.0, 10.5])
    x = np.array([8.5, 9.0, 10.0, 9.2])
    raw = ttest_ind(x, best, equal_var=False).pvalue
    out = versus_best({"best": best, "x": x, "y": x.copy()})
    assert out["x"][1] == pytest.approx(min(1.0, 2 * raw))
    single = versus_best({"best": best, "x": x})
    assert single["x"][1] == pytest.approx(raw)


def test_one_seed_cannot_be_tested():
    out = versus_best({"a": np.array([50.0, 51.0]), "b": np.array([10.0])})
    assert out["b"] == ("untested", None) and out["a"][0] == "best"


def test_critical_difference_diagram(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rows = []
    for d in ("ucf", "activitynet", "vggsound", "extra1", "extra2"):
        for k, m in enumerate(("strong", "middle", "weak", "weakest")):
            rows += [make_row(m, d, s, 60 - 12 * k + rng.normal(0, 1)) for s in range(3)]
    cd = critical_difference({m: {d: c.mean for (mm, d), c in lb.compile_boards(rows)[0].cells.items() if mm == m}
                              for m in ("strong", "middle", "weak", "weakest")})
    assert cd["mean_rank"] == {"strong": 1.0, "middle": 2.0, "weak": 3.0, "weakest": 4.0}
    assert cd["friedman_p"] < 0.01 and cd["nemenyi"].loc["strong", "weakest"] < 0.05
    db = f"sqlite:///{tmp_path / 'r.db'}"
    Store(db).add_rows(rows)
    assert main(["plot", "cd", "--db", db, "--out", str(tmp_path / "figs")]) == 0
    files = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert files == ["cd_hm_avca2022_platform_main_by-name.png", "cd_hm_avca2022_platform_main_by-name.svg"]
    assert all(p.stat().st_size > 5000 for p in (tmp_path / "figs").iterdir())
    assert "strong" in (tmp_path / "figs" / files[1]).read_text()


def test_cd_diagram_needs_several_datasets(tmp_path):
    boards = lb.compile_boards(_rows({"a": [1, 2], "b": [3, 4], "c": [5, 6]}))
    with pytest.raises(DataError, match="at least 3 methods with results on the same 2 or more datasets"):
        plots.cd_diagrams(boards, tmp_path)
