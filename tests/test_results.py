"""Results store (SQLite and the real PostgreSQL), leaderboard, reported numbers, plots."""

import csv
import io
import multiprocessing as mp
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from avbench.cli import main
from avbench.errors import DataError, StoreError
from avbench.results import leaderboard as lb
from avbench.results.formats import render, render_table, to_json
from avbench.results.reported import load_reported
from avbench.results.rows import KEY_FIELDS, default_entry
from avbench.results.store import Store



def make_row(method="avca", dataset="ucf", seed=0, HM=50.0, features="main", protocol="avca2022",
             text_order="by-name", config_hash="c0", created=0, **extra):
    row = {
        "method": method, "dataset": dataset, "features": features, "protocol": protocol,
        "text_order": text_order, "seed": seed, "S": HM + 5, "U": HM - 5, "HM": HM, "ZSL": HM / 2,
        "beta": 1.0, "best_epoch": 3, "config": {"lr": 0.001}, "config_hash": config_hash,
        "data_fingerprint": "fp", "avbench_version": "0", "git_revision": None, "torch_version": "2",
        "ray_version": None, "optuna_version": None, "mlflow_version": None, "device": "cpu", "seconds": 1.0,
        "mlflow_run_id": None, "details": {}, "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=created),
    }
    row.update(extra)
    row.setdefault("entry_kind", "run")
    row.setdefault("protocol_mode", "platform")
    row.setdefault("reduced_budget", False)
    row.setdefault("entry", default_entry(row))
    return row


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, pg_schema):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return pg_schema()


def test_writes_are_idempotent_on_the_key(db_url):
    store = Store(db_url)
    first = store.add_rows([make_row(seed=0), make_row(seed=1)])
    again = store.add_rows([make_row(seed=0, HM=99.0), make_row(seed=1)])
    assert [inserted for _, inserted in first] == [True, True]
    assert [inserted for _, inserted in again] == [False, False]
    assert [rid for rid, _ in again] == [rid for rid, _ in first]
    assert store.count() == 2
    assert store.get(first[0][0])["HM"] == 50.0  # the first result for a key is kept
    for field in KEY_FIELDS:  # any part of the key makes a new row (each in an entry of its own)
        changed = make_row(**{field: 7 if field == "seed" else "other"})
        if field != "entry":
            changed["entry"] = f"e-{field}"
        store.add_rows([changed])
    assert store.count() == 2 + len(KEY_FIELDS)


def _worker(url, k, barrier):
    barrier.wait()  # all processes open the store (and create the schema) at once
    store = Store(url)
    store.add_rows([make_row(seed=s) for s in range(5)] + [make_row(seed=100 + k)])


def test_concurrent_processes_create_schema_and_write_safely(db_url):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_worker, args=(db_url, k, barrier)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = Store(db_url)
    assert store.count() == 5 + 4
    assert sorted(r["seed"] for r in store.rows(columns=["seed"])) == [0, 1, 2, 3, 4, 100, 101, 102, 103]


def test_unreachable_store_is_a_one_line_error(tmp_path):
    with pytest.raises(StoreError) as e:
        Store("postgresql://nobody@127.0.0.1:1/none")
    assert "\n" not in str(e.value) and "127.0.0.1" in str(e.value)
    with pytest.raises(StoreError, match="not a SQLAlchemy database URL"):
        Store("not a url")


# ----------------------------------------------------------------------------- leaderboard
ROWS = [
    make_row("avca", "ucf", 0, 30.0), make_row("avca", "ucf", 1, 34.0), make_row("avca", "ucf", 2, 32.0),
    make_row("ale", "ucf", 0, 20.0), make_row("ale", "ucf", 1, 24.0),
    make_row("avca", "activitynet", 0, 10.0), make_row("ale", "activitynet", 0, 12.0),
    # an older configuration of ale on ucf: superseded by the newer one, never mixed in
    make_row("ale", "ucf", 0, 90.0, config_hash="old", created=-100),
    # another protocol and text order: other tables
    make_row("avca", "ucf", 0, 40.0, protocol="clipclap2024"),
    make_row("avca", "ucf", 0, 45.0, text_order="legacy"),
]


def _board(boards, protocol="avca2022", text_order="by-name"):
    (b,) = [b for b in boards if b.protocol == protocol and b.text_order == text_order]
    return b


def test_cells_ranks_and_separate_tables():
    boards = lb.compile_boards([dict(r, id=i) for i, r in enumerate(ROWS)])
    assert len(boards) == 3
    b = _board(boards)
    assert b.datasets == ["ucf", "activitynet"]
    c = b.cells[("avca", "ucf")]
    assert (c.mean, c.std, c.n) == (32.0, 2.0, 3)
    # Student's t interval of the mean, 2 degrees of freedom: 32 ± 4.303 · 2/√3
    assert (c.ci_low, c.ci_high) == pytest.approx((32.0 - 4.9683, 32.0 + 4.9683), abs=1e-4)
    ale = b.cells[("ale", "ucf")]
    assert (ale.mean, ale.n) == (22.0, 2)  # the old config's 90 is not mixed in
    assert (c.rank, ale.rank) == (1, 2)
    assert (b.cells[("avca", "activitynet")].rank, b.cells[("ale", "activitynet")].rank) == (2, 1)
    assert b.mean_rank == {"avca": 1.5, "ale": 1.5}
    assert b.methods == ["ale", "avca"]  # tie on mean rank: by name
    single = b.cells[("ale", "activitynet")]
    assert single.n == 1 and all(x != x for x in (single.std, single.ci_low, single.ci_high))  # NaN: no spread
    assert _board(boards, "clipclap2024").cells[("avca", "ucf")].mean == 40.0


def test_ties_share_the_average_rank():
    rows = [make_row("a", "ucf", 0, 10.0), make_row("b", "ucf", 0, 10.0), make_row("c", "ucf", 0, 5.0)]
    b = lb.compile_boards(rows)[0]
    assert [b.cells[(m, "ucf")].rank for m in "abc"] == [1.5, 1.5, 3]


def test_formats_render_every_row():
    boards = lb.compile_boards(ROWS, datasets=["ucf"])
    md = render(boards, "md")
    assert "| avca | 32.00 ± 2.00 (3) |" in md and "| ale | 22.00 ± 2.83 (2)≈ |" in md  # n=2 vs 3: no significant gap
    rows = list(csv.DictReader(io.StringIO(render(boards, "csv"))))
    mine = [r for r in rows if r["protocol"] == "avca2022" and r["text_order"] == "by-name"]
    assert {(r["method"], r["dataset"], r["rank"]) for r in mine} == {("avca", "ucf", "1"), ("ale", "ucf", "2")}
    tex = render(boards, "tex")
    assert r"\begin{tabular}" in tex and r"\textbf{32.00 $\pm$ 2.00 (3)}" in tex and "UCF-GZSL" in tex
    assert r"$^{\approx}$" in tex and "Holm" in tex
    html = render(boards, "html")
    assert html.startswith("<!doctype html>") and 'data-method="ale"' in html and "<script>" in html


def test_reported_numbers_carry_a_delta_only_under_their_own_protocol_and_text_order():
    reported = load_reported()
    assert {r["features"] for r in reported} >= {"main", "clipclap"}
    boards = lb.compile_boards(ROWS, reported=reported)
    # the AVCA paper's numbers were produced with the legacy (misaligned) text order under avca2022
    legacy = _board(boards, text_order="legacy")
    assert legacy.reported[("avca", "ucf")] == 27.15 and legacy.reported[("sje", "vggsound")] == 2.15
    assert abs(legacy.delta("avca", "ucf") - (45.0 - 27.15)) < 1e-9
    assert "vggsound" in legacy.datasets and "sje" in legacy.methods  # published-only rows are shown too
    md = render([legacy], "md", with_reported=True)
    assert "+17.85" in md and "Mercea et al." in md
    # a by-name board (and another protocol's board) shows them labelled, without Δ
    for b in (_board(boards), _board(boards, "clipclap2024")):
        assert b.reported[("avca", "ucf")] == 27.15 and b.delta("avca", "ucf") is None
        md = render([b], "md", with_reported=True)
        assert "27.15*" in md and "no Δ" in md and "+4.85" not in md
        rows = list(csv.DictReader(io.StringIO(render([b], "csv", with_reported=True))))
        (avca,) = [r for r in rows if r["method"] == "avca" and r["dataset"] == "ucf"]
        assert avca["reported_comparable"] == "false" and avca["delta"] == ""
        assert "(other protocol)" in str(render_table([b], True)[0].columns[2]._cells)


def test_reported_file_errors_name_file_and_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("source: x\nfeatures: main\nresults:\n  avca:\n    ucf: {HM: high}\n")
    with pytest.raises(DataError, match=r"bad.yaml: results.avca.ucf.HM='high'"):
        load_reported(tmp_path)
    (tmp_path / "bad.yaml").write_text("features: main\nresults: {}\n")
    with pytest.raises(DataError, match=r"bad.yaml: missing key 'source'"):
        load_reported(tmp_path)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("chromium is not installed: run `bash tests/install_browser.sh` (the README's test command does)")


def test_html_page_renders_and_sorts_in_headless_chromium(tmp_path):
    rows = [make_row("zeta", "ucf", 0, 10.0), make_row("alpha", "ucf", 0, 50.0), make_row("mid", "ucf", 0, 30.0)]
    page = tmp_path / "leaderboard.html"
    page.write_text(render(lb.compile_boards(rows), "html"))
    out = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    dom = out.stdout
    assert 'data-sorted-by="mean-rank"' in dom, out.stderr[-2000:]  # the page's script ran
    order = [m for m in ("alpha", "mid", "zeta") if f'data-method="{m}"' in dom]
    assert order == ["alpha", "mid", "zeta"]
    positions = [dom.index(f'data-method="{m}"') for m in ("alpha", "mid", "zeta")]
    assert positions == sorted(positions)
    assert "50.00 (1)" in dom and "± 0.00 (1)" not in dom  # one seed: no spread shown


# ----------------------------------------------------------------------------- CLI and plots
def test_run_stores_results_and_leaderboard_shows_them(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    base = ["run", "--quiet", "--json", "--db", db, "--epochs", "1", "--batches-per-epoch", "4",
            "--set", "batch_size=32", "--set", "hidden_encoder=32"]
    for seed in ("0", "1", "0"):  # the repeated seed must not add a row
        assert main(base + ["--seed", seed]) == 0
    assert main(base + ["--seed", "2", "--no-store"]) == 0
    capsys.readouterr()
    assert Store(db).count() == 2
    assert main(["leaderboard", "--db", db, "--format", "md"]) == 0
    assert "| avca |" in capsys.readouterr().out and "(2)" in render(
        lb.compile_boards(Store(db).rows()), "md")
    out = tmp_path / "lb"
    assert main(["leaderboard", "--db", db, "--out", str(out), "--reported"]) == 0
    assert {p.name for p in out.iterdir()} == {"leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html"}
    figs = tmp_path / "figs"
    rid = Store(db).rows(columns=["id"])[0]["id"]
    assert main(["plot", "metric", "--db", db, "--out", str(figs)]) == 0
    assert main(["plot", "beta", "--result", str(rid), "--db", db, "--out", str(figs)]) == 0
    assert main(["plot", "epochs", "--result", str(rid), "--db", db, "--out", str(figs)]) == 0
    names = {p.name for p in figs.iterdir()}
    assert {"hm.png", "hm.svg", f"beta_curve_{rid}.png", f"beta_curve_{rid}.svg", f"val_hm_{rid}.png"} <= names
    assert all(p.stat().st_size > 1000 for p in figs.iterdir())
    assert main(["plot", "beta", "--result", "999", "--db", db]) == 2
    assert "no such result" in capsys.readouterr().err


def test_the_ci_of_two_seeds_is_the_t_interval_not_their_range():
    from scipy import stats

    b = lb.compile_boards([make_row(seed=0, HM=28.0), make_row(seed=1, HM=32.0)])[0]
    c = b.cells[("avca", "ucf")]
    assert (c.ci_low, c.ci_high) == pytest.approx(stats.t.interval(0.95, 1, loc=30.0, scale=2.0))  # 30 ± 25.4
    assert c.ci_low < 5.0 and c.ci_high > 55.0  # a bootstrap would have said [28, 32]
    assert "[4.59, 55.41]" in render([b], "md")
    assert "Student's t" in b.note and "bootstrap" not in b.note


def test_one_seed_shows_no_spread_in_any_format():
    import json

    b = lb.compile_boards([make_row(seed=0, HM=12.0), make_row("ale", seed=0, HM=10.0),
                           make_row("ale", seed=1, HM=11.0)])[0]
    md = render([b], "md")
    assert "| avca | 12.00 (1) |  |" in md and "± nan" not in md  # mean (n), no ± and no CI
    (r,) = [r for r in csv.DictReader(io.StringIO(render([b], "csv"))) if r["method"] == "avca"]
    assert (r["mean"], r["std"], r["n"], r["ci_low"], r["ci_high"]) == ("12.0000", "", "1", "", "")
    assert "12.00 (1)" in render([b], "tex") and "nan" not in render([b], "tex")
    assert ">nan" not in render([b], "html").lower()
    cell = [c for c in json.loads(to_json([b]))[0]["cells"] if c["method"] == "avca"][0]
    assert (cell["std"], cell["ci_low"], cell["ci_high"]) == (None, None, None)  # valid JSON, no NaN


def test_mean_rank_is_over_every_dataset_of_the_table():
    rows = [make_row("x", "ucf", 0, 50.0), make_row("x", "vggsound", 0, 20.0),
            make_row("y", "ucf", 0, 40.0), make_row("y", "vggsound", 0, 10.0),
            make_row("z", "vggsound", 0, 30.0)]  # z: only the one dataset, where it is best
    b = lb.compile_boards(rows)[0]
    assert b.cells[("z", "vggsound")].rank == 1  # per-dataset rank among all its methods
    assert b.mean_rank == {"x": 1.0, "y": 2.0}  # z has no mean rank: not ranked above x on one dataset
    assert b.methods == ["x", "y", "z"]  # methods without a mean rank last
    (z,) = [line for line in render([b], "md").splitlines() if line.startswith("| z |")]
    assert z.endswith("|  |")  # its mean-rank column is empty
