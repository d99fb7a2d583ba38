"""Leaderboard entries: a cell shows one entry of one configuration on one data version."""

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from sqlalchemy import MetaData, Table, UniqueConstraint, create_engine, insert
from test_results import make_row

from avbench.cli import main
from avbench.errors import StoreError
from avbench.protocol.machine import hardware
from avbench.results import leaderboard as lb
from avbench.results.formats import render, to_json
from avbench.results.migrate import LEGACY_KEY_FIELDS
from avbench.results.rows import KEY_FIELDS
from avbench.results.store import Result, Store


def _sweep(seeds, HM, created=0, entry="avca-ucf-sweep", **kw):
    return [make_row("avca", "ucf", s, HM + s, entry=entry, entry_kind="sweep", created=created + s, **kw)
            for s in seeds]


def _cell(rows, method="avca", dataset="ucf", **kw):
    boards = lb.compile_boards([dict(r, id=i) for i, r in enumerate(rows)], **kw)
    (b,) = boards
    return b, b.cells[(method, dataset)]


def test_data_versions_are_never_pooled():
    rows = [make_row(seed=s, HM=30.0 + s, data_fingerprint="old") for s in range(3)]
    rows += [make_row(seed=s, HM=60.0 + s, data_fingerprint="new", created=100) for s in range(2)]
    _, c = _cell(rows)
    assert (c.n, c.mean, c.data_fingerprint) == (2, 60.5, "new")  # the re-imported data's results only


def test_a_smoke_run_after_a_sweep_never_replaces_its_finals():
    rows = _sweep([3, 4, 5], 50.0)
    # later: `avbench run --epochs 1` (reduced budget), then a full-budget single run of another config
    rows.append(make_row(seed=0, HM=5.0, config_hash="smoke", reduced_budget=True, created=1000))
    b, c = _cell(rows)
    assert (c.entry, c.n, c.mean) == ("avca-ucf-sweep", 3, 54.0) and not c.reduced
    rows.append(make_row(seed=0, HM=70.0, config_hash="manual", created=2000))
    _, c = _cell(rows)
    assert c.entry == "avca-ucf-sweep"  # a sweep entry is preferred over a later single run


def test_a_reduced_budget_entry_is_marked_and_never_displaces_a_full_one():
    full = [make_row(seed=s, HM=40.0, config_hash="full") for s in range(2)]
    reduced = [make_row(seed=s, HM=10.0, config_hash="tiny", reduced_budget=True, created=500) for s in range(3)]
    _, c = _cell(full + reduced)
    assert (c.config_hash, c.reduced) == ("full", False)
    b, c = _cell(reduced)  # alone, it is shown, marked
    assert c.reduced and "‡" in c.marks
    assert "‡" in render([b], "md") and "reduced budget" in b.note
    assert "ddagger" in render([b], "tex")
    (r,) = list(csv.DictReader(io.StringIO(render([b], "csv"))))
    assert r["reduced_budget"] == "true"


def test_two_code_revisions_in_one_entry_are_flagged_in_every_format():
    rows = [make_row(seed=0, HM=40.0, git_revision="aaaa"), make_row(seed=1, HM=41.0, git_revision="bbbb")]
    b, c = _cell(rows)
    assert c.n == 2 and c.revisions == ["aaaa", "bbbb"] and "†" in c.marks
    assert "†" in render([b], "md") and "aaaa" in b.note
    assert r"\dagger" in render([b], "tex")
    html = render([b], "html")
    assert "†" in html and "code aaaa, bbbb" in html
    (r,) = list(csv.DictReader(io.StringIO(render([b], "csv"))))
    assert r["code_revisions"] == "aaaa bbbb" and "†" in r["marks"]
    _, one = _cell([make_row(seed=0, git_revision="aaaa"), make_row(seed=1, git_revision="aaaa")])
    assert "†" not in one.marks
    # installed from a package (no git checkout): the avbench version tells the code apart
    _, pkg = _cell([make_row(seed=0, avbench_version="0.1.0"), make_row(seed=1, avbench_version="0.2.0")])
    assert pkg.revisions == ["avbench-0.1.0", "avbench-0.2.0"] and "†" in pkg.marks
    _, same = _cell([make_row(seed=0, avbench_version="0.1.0"), make_row(seed=1, avbench_version="0.1.0")])
    assert same.revisions == ["avbench-0.1.0"] and "†" not in same.marks
    # one revision, but with uncommitted changes: no reader can check that code out
    b, dirty = _cell([make_row(seed=0, git_revision="aaaa-dirty"), make_row(seed=1, git_revision="aaaa-dirty")])
    assert dirty.revisions == ["aaaa-dirty"] and "†" in dirty.marks
    assert "uncommitted" in b.note and "aaaa-dirty" in b.note and "†" in render([b], "md")


def test_explicit_entry_selection_and_unknown_entry():
    rows = _sweep([1, 2], 50.0, entry="first") + _sweep([1, 2], 20.0, entry="second", created=100)
    assert _cell(rows)[1].entry == "second"  # default: the latest sweep
    assert _cell(rows, entries=["first"])[1].mean == 51.5
    with pytest.raises(Exception, match="no such entry"):
        lb.compile_boards(rows, entries=["third"])


def test_a_named_run_entry_holds_one_configuration(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.add_rows([make_row(seed=0, entry="mine")])
    store.add_rows([make_row(seed=1, entry="mine", git_revision="other")])  # another revision: allowed, flagged
    with pytest.raises(StoreError, match="entry 'mine' holds config_hash='c0'; this result has config_hash='c9'"):
        store.add_rows([make_row(seed=2, entry="mine", config_hash="c9")])
    with pytest.raises(StoreError, match="holds run results"):
        store.add_rows([make_row(seed=2, entry="mine", entry_kind="sweep")])
    assert store.count() == 2


def test_cli_run_entry_results_and_delete(tmp_path, capsys, monkeypatch):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    base = ["run", "--quiet", "--json", "--db", db, "--epochs", "1", "--batches-per-epoch", "2",
            "--set", "batch_size=16", "--set", "hidden_encoder=16"]
    assert main(base + ["--seed", "0", "--entry", "smoke"]) == 0
    capsys.readouterr()
    # another configuration, or another preset of the same configuration, into the same entry: refused before
    # any training
    import avbench.protocol.run

    monkeypatch.setattr(avbench.protocol.run, "run_protocol", lambda *a, **k: pytest.fail("trained"))
    assert main(base + ["--seed", "1", "--entry", "smoke", "--set", "lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "entry 'smoke' holds config_hash" in err and len(err.strip().splitlines()) == 1
    assert main(base + ["--seed", "1", "--entry", "smoke", "--protocol", "tcaf2022"]) == 2
    assert "entry 'smoke' holds protocol='avca2022'; this run has protocol='tcaf2022'" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(base + ["--seed", "0"]) == 0  # default entry: one per configuration, budget and data
    capsys.readouterr()
    rows = Store(db).rows(columns=["entry", "reduced_budget", "threads", "hardware", "torch_version"])
    assert {r["entry"] for r in rows} == {"smoke", rows[1]["entry"]} and rows[1]["entry"].startswith("run/avca/")
    assert all(r["reduced_budget"] for r in rows) and all(r["threads"] >= 1 for r in rows)
    # the machine and torch build that computed the numbers (a seed reproduces to the bit only there)
    assert {(r["hardware"], r["torch_version"]) for r in rows} == {(hardware(torch.device("cpu")), torch.__version__)}
    assert main(["results", "--db", db, "--entry", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "smoke" in out and "run/avca" not in out
    assert f"machine m1: {hardware(torch.device('cpu'))}, torch {torch.__version__}" in out  # the table's legend
    assert main(["leaderboard", "--db", db, "--format", "csv", "--entry", "smoke"]) == 0
    assert "smoke" in capsys.readouterr().out
    assert main(["results", "delete", "--db", db, "--entry", "smoke"]) == 0
    assert "1 results" in capsys.readouterr().out
    assert main(["results", "delete", "--db", db, "--entry", "smoke"]) == 2
    assert "no such entry" in capsys.readouterr().err
    assert Store(db).count() == 1
    # a method name is the registry's in any case: `--method AVCA` fits an entry of avca runs
    assert main(base + ["--seed", "0", "--entry", "cased"]) == 0
    assert main(base + ["--seed", "1", "--entry", "cased", "--method", "AVCA"]) == 0
    capsys.readouterr()
    assert main(["results", "--db", db, "--method", "AVCA", "--entry", "cased"]) == 0
    assert capsys.readouterr().out.count("cased") == 2



def test_cli_run_says_when_its_seed_chose_the_configuration(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    base = ["run", "--quiet", "--db", db, "--epochs", "1", "--batches-per-epoch", "2",
            "--set", "batch_size=16", "--set", "hidden_encoder=16"]
    assert main([*base, "--json", "--seed", "1", "--entry", "first"]) == 0
    stored = Store(db).rows()[0]
    # a sweep's final of that configuration, searched on seed 0 (as a sweep stores it)
    Store(db).add_rows([{**{k: v for k, v in stored.items() if k != "id"}, "seed": 1, "entry": "the-sweep",
                         "entry_kind": "sweep", "search_seeds": [0]}])
    capsys.readouterr()
    assert main([*base, "--json", "--seed", "0", "--entry", "first"]) == 0
    assert json.loads(capsys.readouterr().out)["search_seed_of"] == ["the-sweep"]
    assert main([x for x in base if x != "--quiet"] + ["--seed", "0", "--entry", "first"]) == 0
    said = capsys.readouterr()
    out, err = (" ".join(x.split()) for x in (said.out, said.err))
    assert "left out of the leaderboard: seed 0 chose this configuration in sweep the-sweep" in out
    assert "note: left out of the leaderboard: seed 0" in err  # before training, too
    assert main([*base, "--json", "--seed", "2", "--entry", "first"]) == 0
    assert json.loads(capsys.readouterr().out)["search_seed_of"] == []
    # at another thread count: another configuration hash, the same configuration the seed chose
    assert main([*base, "--json", "--seed", "0", "--threads", "2", "--entry", "two-threads"]) == 0
    assert json.loads(capsys.readouterr().out)["search_seed_of"] == ["the-sweep"]
    assert Store(db).rows(entry="two-threads")[0]["config_hash"] != stored["config_hash"]


# columns added since (the machine came after entries: the migration adds both)
NEW_COLUMNS = {"entry", "entry_kind", "protocol_mode", "protocol_options", "search_seeds", "reduced_budget", "threads",
               "hardware"}


def _legacy_store(url, rows):
    """A store as avbench wrote it before entries existed (the old columns and unique key)."""
    md = MetaData()
    table = Table(Result.__tablename__, md,
                  *[c._copy() for c in Result.__table__.columns if c.name not in NEW_COLUMNS],
                  UniqueConstraint(*LEGACY_KEY_FIELDS, name="uq_avbench_result_key"))
    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    md.create_all(eng)
    with eng.begin() as conn:
        for r in rows:
            conn.execute(insert(table).values(**{k: v for k, v in r.items() if k not in NEW_COLUMNS}))
    eng.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_old_store_is_migrated(backend, tmp_path, pg_schema):
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else pg_schema()
    _legacy_store(url, [make_row(seed=0, HM=30.0), make_row(seed=1, HM=32.0),
                        make_row(seed=0, HM=50.0, config_hash="swept", mlflow_run_id="run1", created=10),
                        make_row(seed=1, HM=52.0, config_hash="swept", mlflow_run_id="run2", created=11)])
    store = Store(url)
    rows = store.rows(columns=["seed", "entry", "entry_kind", "protocol_mode", "reduced_budget", "hardware"])
    assert len(rows) == 4 and all(r["protocol_mode"] == "platform" and not r["reduced_budget"] for r in rows)
    assert all(r["hardware"] is None for r in rows)  # added after the entries migration: unknown
    kinds = {r["entry"]: r["entry_kind"] for r in rows}
    assert sorted(kinds.values()) == ["run", "sweep"] and len(kinds) == 2
    assert store.add_rows([make_row(seed=1, HM=99.0)]) == [(2, False)]  # the old row keeps its key
    assert store.add_rows([make_row(seed=2, HM=31.0)])[0][1] is True
    Store(url)  # opening again is a no-op
    board = lb.compile_boards(lb.board_rows(store, "HM"))[0]
    cell = board.cells[("avca", "ucf")]
    assert cell.entry.startswith("migrated-sweep/")  # the old sweep's finals are shown
    assert (cell.n, cell.mean) == (1, 52.0)  # but not its seed-0 final, the seed the old sweep chose on


def test_a_final_on_a_search_seed_is_never_shown():
    rows = _sweep([0, 1, 2], 50.0, search_seeds=[0])  # seed 0 chose the configuration
    _, c = _cell(rows)
    assert (c.n, c.values) == (2, [51.0, 52.0])


def test_a_final_on_another_sweeps_search_seed_in_the_same_entry_is_never_shown():
    # two sweeps wrote one entry and chose one configuration: the first searched on seed 0
    # and ran finals 1-3, the second searched on seeds 0-2 and ran finals 3-5
    rows = _sweep([1, 2, 3], 50.0, search_seeds=[0]) + _sweep([4, 5], 50.0, created=100, search_seeds=[0, 1, 2])
    _, c = _cell(rows)
    assert c.values == [53.0, 54.0, 55.0]  # seeds 1 and 2 chose the configuration in the second sweep


def test_results_under_other_protocol_rules_never_share_an_entry_or_a_cell(tmp_path):
    """Protocol-level rules (β rule, selection, stage2_lr) are outside the configuration hash: reference results
    of a code version without stage2_lr and of one with it get other default entries, a named entry refuses
    the mix, and a cell never pools them."""
    old = {"beta_rule": "mean", "selection": "zero-is-unset"}
    new = {**old, "stage2_lr": "val-plateau"}
    a = make_row(seed=0, protocol_mode="reference", protocol_options=old)
    b = make_row(seed=1, protocol_mode="reference", protocol_options=new)
    assert a["entry"] != b["entry"] and "/avca2022/reference-" in a["entry"]
    assert make_row(seed=0, protocol_mode="reference", protocol_options=dict(reversed(new.items())))["entry"] == \
        b["entry"]  # the options' order does not matter
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.add_rows([a, b])
    assert store.count() == 2
    store.add_rows([dict(a, entry="mine")])
    with pytest.raises(StoreError, match=r"entry 'mine' holds protocol_options=\{.*\}; this result has "
                                         r"protocol_options=\{.*'stage2_lr': 'val-plateau'\}"):
        store.add_rows([dict(b, entry="mine")])
    rows = [dict(a, entry="mine"), dict(b, entry="mine", seed=2)]  # as if one entry held both
    groups = lb.choose_groups([dict(r, id=i) for i, r in enumerate(rows)])
    assert [[r["seed"] for r in g] for g in groups.values()] == [[2]]  # one cell, one group: never pooled
    # a sweep under the earlier rules chose the configuration on seed 0: stage2_lr acts after stage 1, where
    # that choice was made, so a run on seed 0 under the new rules still repeats it; another β rule does not
    sweep = _sweep([1, 2], 50.0, search_seeds=[0], protocol_mode="reference", protocol_options=old)
    for opts, shown in ((new, [41.0, 42.0]), ({**new, "beta_rule": "predictor"}, [40.0, 41.0, 42.0])):
        runs = [make_row(seed=s, HM=40.0 + s, entry="mine", protocol_mode="reference", protocol_options=opts)
                for s in range(3)]
        _, c = _cell(sweep + runs, entries=["mine"])
        assert c.values == shown, opts


def test_a_run_of_the_chosen_configuration_on_a_search_seed_is_never_shown():
    # a sweep chose configuration c0 on seed 0; `avbench run` of c0 on seeds 0-2 in an entry of its own
    rows = _sweep([1, 2], 50.0, search_seeds=[0]) + [make_row(seed=s, HM=40.0 + s, entry="mine") for s in range(3)]
    _, c = _cell(rows, entries=["mine"])
    assert c.values == [41.0, 42.0]  # seed 0 repeats the run that won the search
    # the same configuration at another thread count repeats it too (threads say how a run executes)
    runs = [make_row(seed=s, HM=40.0 + s, entry="mine", config={"lr": 0.001, "threads": 2}, config_hash="c2")
            for s in range(3)]
    _, c = _cell(_sweep([1, 2], 50.0, search_seeds=[0], config={"lr": 0.001, "threads": 1}) + runs,
                 entries=["mine"])
    assert c.values == [41.0, 42.0]
    # the same seeds of another configuration, another data version or protocol mode are kept
    for other in ({"config_hash": "c1", "config": {"lr": 0.01}}, {"data_fingerprint": "new"},
                  {"protocol_mode": "reference"},
                  {"protocol_options": {"beta_rule": "mean"}}):
        rows = _sweep([1, 2], 50.0, search_seeds=[0]) + [make_row(seed=s, HM=40.0 + s, entry="mine", **other)
                                                           for s in range(3)]
        boards = lb.compile_boards([dict(r, id=i) for i, r in enumerate(rows)], entries=["mine"])
        assert [b.cells[("avca", "ucf")].values for b in boards] == [[40.0, 41.0, 42.0]], other


def test_a_sweeps_finals_are_not_dropped_for_another_sweeps_search_seeds():
    # two sweeps chose configuration c0 each on its own: A on seed 0 (finals 1-3), B on seeds 1-3 (finals 4, 5)
    rows = _sweep([1, 2, 3], 50.0, created=100, entry="A", search_seeds=[0])
    rows += _sweep([4, 5], 50.0, entry="B", search_seeds=[1, 2, 3])
    _, c = _cell(rows)
    assert (c.entry, c.values) == ("A", [51.0, 52.0, 53.0])  # A's choice never saw seeds 1-3


def test_a_dataset_mixing_data_versions_is_marked_in_its_title():
    rows = [make_row("avca", seed=0, HM=30.0), make_row("ale", seed=0, HM=20.0, data_fingerprint="other")]
    b = lb.compile_boards(rows)[0]
    assert b.mixed_data == ["ucf"]
    for fmt, title in (("md", "UCF-GZSL § mean"), ("tex", r"UCF-GZSL \S{}"), ("html", "UCF-GZSL §")):
        assert title in render([b], fmt)
    tex = render([b], "tex")
    assert "Student" not in tex and "95%" not in tex  # the TeX table has no CI column, nor its footnote


ZEN3 = {"hardware": "AMD EPYC (x86_64, family 25 model 1) AVX2", "torch_version": "2.13.0+cpu"}
ZEN4 = {"hardware": "AMD EPYC (x86_64, family 25 model 17) AVX512", "torch_version": "2.13.0+cpu"}


def test_seeds_from_several_machines_in_one_entry_are_flagged_in_every_format():
    rows = [make_row(seed=0, HM=40.0, **ZEN3), make_row(seed=1, HM=41.0, **ZEN4)]
    b, c = _cell(rows)
    assert c.n == 2 and len(c.machines) == 2 and "¶" in c.marks  # pooled, but flagged
    assert "¶" in render([b], "md") and "family 25 model 17" in b.note
    assert r"\P{}" in render([b], "tex")
    assert "machines AMD EPYC (x86_64, family 25 model 1) AVX2, torch 2.13.0+cpu;" in render([b], "html")
    (r,) = list(csv.DictReader(io.StringIO(render([b], "csv"))))
    assert r["machines"].count("AMD EPYC") == 2 and "¶" in r["marks"]
    b1, one = _cell([make_row(seed=0, **ZEN3), make_row(seed=1, **ZEN3)])
    assert "¶" not in one.marks and one.machines == ["AMD EPYC (x86_64, family 25 model 1) AVX2, torch 2.13.0+cpu"]
    # one machine: no mark, and the footnote still says where the numbers were computed
    assert b1.note.endswith("; computed on AMD EPYC (x86_64, family 25 model 1) AVX2, torch 2.13.0+cpu")
    assert "computed on AMD EPYC" in render([b1], "md") and "computed on AMD EPYC" in render([b1], "tex")
    # the same CPU with another torch build rounds differently too
    _, torches = _cell([make_row(seed=0, **ZEN3), make_row(seed=1, **dict(ZEN3, torch_version="2.14.1"))])
    assert "¶" in torches.marks
    # a result of a store that did not record its machine cannot be vouched for
    _, unknown = _cell([make_row(seed=0, **ZEN3), make_row(seed=1, torch_version="2.13.0+cpu")])
    assert "¶" in unknown.marks and "unknown machine, torch 2.13.0+cpu" in unknown.machines


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_written_before_machines_were_recorded_gains_the_column(backend, tmp_path, pg_schema):
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else pg_schema()
    md = MetaData()
    table = Table(Result.__tablename__, md, *[c._copy() for c in Result.__table__.columns if c.name != "hardware"],
                  UniqueConstraint(*KEY_FIELDS, name="uq_avbench_result_entry_key"))
    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    md.create_all(eng)
    with eng.begin() as conn:
        conn.execute(insert(table).values(**make_row(seed=0, HM=30.0, protocol_options={})))
    eng.dispose()
    store = Store(url)
    assert store.rows(columns=["seed", "hardware"]) == [{"seed": 0, "hardware": None}]  # unknown, kept
    store.add_rows([make_row(seed=1, HM=32.0, **ZEN3)])
    Store(url)  # opening again is a no-op
    board = lb.compile_boards(lb.board_rows(store, "HM"))[0]
    cell = board.cells[("avca", "ucf")]
    assert cell.n == 2 and "¶" in cell.marks and "unknown machine, torch 2" in cell.machines


def test_a_result_is_stored_with_the_torch_of_the_process_that_ran_it(tmp_path):
    """A sweep's final runs in a trial process, maybe on another node than the one storing it."""
    from avbench.protocol.result import RunResult
    from avbench.results.provenance import git_revision
    from avbench.results.rows import row_from_result

    res = RunResult(method="avca", dataset="ucf", features="main", protocol="avca2022", seed=1, S=0.5, U=0.4,
                    HM=0.44, ZSL=0.3, beta=1.0, best_epoch=2, stage2_epochs=2, text_order="by-name",
                    data_fingerprint="fp", device="cpu", seconds=1.0, config={"lr": 0.001},
                    hardware="AMD EPYC (x86_64, family 25 model 1 stepping 1) AVX2", torch_version="2.99.0+worker")
    row = row_from_result(res, env={"torch_version": "2.13.0+driver", "git_revision": git_revision()})
    assert (row["torch_version"], row["hardware"]) == ("2.99.0+worker", res.hardware)
    assert row["git_revision"] == git_revision()  # no code recorded by the worker: the storing process's
    # a node with another checkout: its own code, not the driver's
    res.git_revision, res.avbench_version = "0ld0ld0ld0ld", "0.0.9"
    row = row_from_result(res, env={"torch_version": "2.13.0+driver", "git_revision": "driverdriver",
                                    "avbench_version": "0.1.0"})
    assert (row["git_revision"], row["avbench_version"]) == ("0ld0ld0ld0ld", "0.0.9")
    res.git_revision, res.avbench_version = None, "0.0.9"  # the node runs an installed package without git
    assert row_from_result(res, env={"git_revision": "driverdriver"})["git_revision"] is None
    res.hardware, res.torch_version = "", ""  # a result of an older worker: the storing process's torch, no machine
    res.avbench_version = None
    row = row_from_result(res, env={"torch_version": "2.13.0+driver"})
    assert (row["torch_version"], row["hardware"]) == ("2.13.0+driver", None)


def test_the_code_revision_is_avbench_s_own_checkout_only(tmp_path, monkeypatch):
    """Installed inside another project's git repository, avbench does not record that project's commit."""
    import shutil
    import subprocess

    import avbench
    from avbench.results import provenance

    assert provenance.git_revision() is not None  # this checkout
    other = tmp_path / "project"
    pkg = other / ".venv" / "site-packages" / "avbench"
    shutil.copytree(Path(avbench.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    monkeypatch.setattr(provenance, "__file__", str(pkg / "results" / "provenance.py"))
    assert provenance.git_revision() is None  # the leaderboard then tells code apart by avbench's version

    class Installed:  # `pip install git+https://...@<commit>` records the commit (PEP 610)
        def read_text(self, name):
            assert name == "direct_url.json"
            return json.dumps({"url": "https://example.org/avbench.git",
                               "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123"}})

    monkeypatch.setattr(provenance, "distribution", lambda name: Installed())
    assert provenance.git_revision() == "0123456789ab"  # two such installs of different commits are told apart


def test_a_store_needing_new_columns_opened_by_a_non_owner_is_a_one_line_error(pg_schema):
    """Shared PostgreSQL stores: only the table's owner may add the machine column; a writer with
    SELECT and INSERT rights gets told so, not a traceback."""
    import uuid

    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    url = pg_schema()
    md = MetaData()
    Table(Result.__tablename__, md, *[c._copy() for c in Result.__table__.columns if c.name != "hardware"],
          UniqueConstraint(*KEY_FIELDS, name="uq_avbench_result_entry_key"))  # registered in md
    admin = create_engine(url)
    md.create_all(admin)
    role = f"avbench_writer_{uuid.uuid4().hex[:8]}"
    schema = url.rsplit("%3D", 1)[1]
    try:
        with admin.begin() as c:
            c.execute(text(f"CREATE ROLE {role} LOGIN"))
            c.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
            c.execute(text(f"GRANT SELECT, INSERT ON {schema}.{Result.__tablename__} TO {role}"))
        writer = make_url(url).set(username=role).render_as_string(hide_password=False)
        with pytest.raises(StoreError, match="only the owner of table avbench_results may add: open it once as"):
            Store(writer)
        Store(url)  # the owner adds the column
        store = Store(writer)  # then the writer can open it, and write once it may use the id sequence
        with pytest.raises(StoreError, match="permission denied for sequence avbench_results_id_seq"):
            store.add_rows([make_row(seed=0)])
        with admin.begin() as c:
            c.execute(text(f"GRANT USAGE ON SEQUENCE {schema}.avbench_results_id_seq TO {role}"))
        store.add_rows([make_row(seed=0, hardware="AMD EPYC (x86_64, family 25 model 1 stepping 1) AVX2")])
        assert store.rows(columns=["hardware"])[0]["hardware"].startswith("AMD EPYC")
    finally:
        with admin.begin() as c:
            c.execute(text(f"DROP OWNED BY {role}"))
            c.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_a_cell_under_other_protocol_rules_is_marked_in_every_format():
    """A reference table whose cells follow other protocol rules (a result of an earlier avbench version, without
    stage2_lr: it replayed stage 1's schedule) marks them ◊ and names both rule sets."""
    now = {"beta_rule": "mean", "selection": "zero-is-unset", "stage2_lr": "val-plateau"}
    before = {"beta_rule": "mean", "selection": "zero-is-unset"}
    rows = [make_row(m, "ucf", s, 40.0 + s + i, protocol_mode="reference", protocol_options=opts)
            for i, (m, opts) in enumerate((("avca", now), ("cjme", now), ("ale", before))) for s in range(2)]
    (board,) = lb.compile_boards([dict(r, id=i) for i, r in enumerate(rows)])
    assert [m for (m, _), c in board.cells.items() if c.other_rules] == ["ale"]
    assert board.cells[("ale", "ucf")].marks.endswith("◊") and "◊" not in board.cells[("avca", "ucf")].marks
    assert ("the table's: beta_rule=mean, selection=zero-is-unset, stage2_lr=val-plateau; "
            "◊: beta_rule=mean, selection=zero-is-unset, stage2_lr=replay") in board.footnote()
    for fmt in ("md", "csv", "tex", "html"):  # (the terminal table is a rich object)
        out = render([board], fmt)
        assert ("$\\diamond$" if fmt == "tex" else "◊") in out, fmt
    cells = json.loads(to_json([board]))[0]["cells"]
    assert {c["method"]: c["other_rules"] for c in cells} == {"ale": True, "avca": False, "cjme": False}
    assert [c["rules"] for c in cells if c["method"] == "ale"] == [
        "beta_rule=mean, selection=zero-is-unset, stage2_lr=replay"]
    same = [dict(r, protocol_options=now) for r in rows]
    assert not any(c.other_rules for c in lb.compile_boards([dict(r, id=i) for i, r in enumerate(same)])[0].cells.values())
