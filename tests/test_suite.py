"""Suites: YAML validation, impossible pairs, and one small suite run end to end as a user runs it
(the CLI in a subprocess), killed with kill -9 and resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray")
pytest.importorskip("optuna")

from avbench.errors import ConfigError  # noqa: E402
from avbench.search.suite import load_suite, plan  # noqa: E402

from conftest import REPO  # noqa: E402

SMALL = """\
methods: [avca, cjme, ale, tcaf]
datasets: [synthetic]
trials: 2
seeds: 2
budget:
  default: {epochs: 2, batches_per_epoch: 8, batch_size: 64}
"""
ENTRIES = ["small.avca.synthetic", "small.cjme.synthetic", "small.ale.synthetic"]


# ---------------------------------------------------------------------------- YAML
@pytest.mark.parametrize("text, named", [
    ("methods: [avca]\n", "datasets: missing"),
    ("methods: [avca]\ndatasets: [synthetic]\nepochs: 3\n", "unknown key 'epochs'"),
    ("methods: [nope]\ndatasets: [synthetic]\n", "unknown method 'nope'"),
    ("methods: all\ndatasets: [mnist]\n", "datasets: unknown dataset 'mnist'"),
    ("methods: all\ndatasets: [synthetic]\ntrials: 0\n", "trials: 0: expected a positive integer"),
    ("methods: all\ndatasets: [synthetic]\nfeatures: rgb\n", "features: 'rgb'"),
    ("methods: all\ndatasets: [synthetic]\nprotocol: nope\n", "protocol: 'nope'"),
    ("methods: all\ndatasets: [synthetic]\nbudget: {ucf: {epochs: 2}}\n", "budget: 'ucf' is not one of"),
    ("methods: all\ndatasets: [synthetic]\nbudget: {default: 3}\n", "budget.default: expected a mapping"),
    ("methods: [avca\n", "not valid YAML"),
    ("- avca\n", "expected a mapping"),
])
def test_suite_yaml_errors_are_one_line_naming_the_key(tmp_path, text, named):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named) as e:
        load_suite(str(path))
    assert str(path) in str(e.value) and len(str(e.value).splitlines()) == 1


def test_unknown_suite_names_the_known_ones():
    with pytest.raises(ConfigError, match="synthetic"):
        load_suite("no-such-suite")


def test_shipped_suites_load():
    for name in ("synthetic", "avgzsl-main", "avgzsl-clipclap"):
        s = load_suite(name)
        assert s.name == name and s.methods and s.datasets
    main = load_suite("avgzsl-main")
    assert main.datasets == ["ucf-main", "activitynet-main", "vggsound-main"]


def test_impossible_pairs_are_skipped_with_a_reason(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("methods: [avca, TCAF]\ndatasets: [synthetic, synthetic-temporal, ucf]\n")  # names in any case
    items = {(i.method, i.dataset): i for i in plan(load_suite(str(path)), home=tmp_path / "home")}
    assert items[("avca", "synthetic")].spec is not None and items[("avca", "synthetic")].skip is None
    assert items[("tcaf", "synthetic-temporal")].spec is not None  # temporal features: TCAF runs
    assert "temporal" in items[("tcaf", "synthetic")].skip  # averaged features: TCAF cannot
    assert "not imported" in items[("avca", "ucf-main")].skip  # no data: reported, not fatal
    assert items[("avca", "synthetic")].spec.name == "p.avca.synthetic"


# ---------------------------------------------------------------------------- one suite's story
def _cmd(suite, home, *extra):
    return [sys.executable, "-m", "avbench.cli", "suite", *extra, str(suite), "--home", str(home), "--json"]


def _env(home):
    return {**os.environ, "PYTHONPATH": str(REPO), "AVBENCH_HOME": str(home), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def _stored(home):
    from avbench.results.store import Store

    db = home / "results.db"
    if not db.exists():
        return []
    try:
        return Store(None, home).rows(columns=["entry", "seed", "config_hash"])
    except Exception:  # the store is being created
        return []


def _run(suite, home, *extra):
    p = subprocess.run(_cmd(suite, home, "run", *extra, "--quiet"), env=_env(home), capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), p


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """The suite started, killed with kill -9 once a sweep has stored a final, then rerun twice."""
    root = tmp_path_factory.mktemp("suite_story")
    home, suite = root / "home", root / "small.yaml"
    suite.write_text(SMALL)
    proc = subprocess.Popen(_cmd(suite, home, "run", "--quiet"), env=_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    killed_with = None
    try:
        deadline = time.time() + 600
        while True:
            rows = _stored(home)
            if rows:
                killed_with = rows
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "timed out waiting for a stored final"
            time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the suite's driver
        proc.wait(30)
        time.sleep(1)
        try:  # then the local Ray it had started (orphans now)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
    t = time.time()
    resumed, _ = _run(suite, home)
    resumed_s = time.time() - t
    t = time.time()
    again, again_p = _run(suite, home)
    again_s = time.time() - t
    status = subprocess.run(_cmd(suite, home, "status"), env=_env(home), capture_output=True, text=True, timeout=300)
    return {"home": home, "killed_with": killed_with, "resumed": resumed, "resumed_s": resumed_s, "again": again,
            "again_s": again_s, "again_p": again_p, "status": status, "rows": _stored(home)}


def test_every_sweep_finishes_with_its_finals_once(story):
    rows = story["rows"]
    by_entry = {}
    for r in rows:
        by_entry.setdefault(r["entry"], []).append(r["seed"])
    assert sorted(by_entry) == sorted(ENTRIES)
    for entry, seeds in by_entry.items():
        assert sorted(seeds) == [1, 2], entry  # final seeds after search seed 0, never stored twice
    s = story["resumed"]
    assert s["done"] == 3 and s["failed"] == 0 and s["skipped"] == 1
    assert sorted(s["entries"]) == sorted(ENTRIES)


def test_the_resumed_run_continues_from_where_kill_9_left_it(story):
    before = {(r["entry"], r["seed"]) for r in story["killed_with"]}
    sweeps = {s["name"]: s for s in story["resumed"]["sweeps"]}
    for entry, seed in before:  # finals stored before the kill are not rerun
        s = sweeps[entry]
        assert seed in s["finals_already_stored"] or s.get("state") == "done" and seed not in s["finals"]
    assert any(s.get("resumed") for s in sweeps.values())  # Ray Tune restored an interrupted experiment


def test_a_finished_suite_is_skipped_not_rerun(story):
    s = story["again"]
    assert s["ran"] == 0 and s["done"] == 3
    assert all(x["state"] in ("done", "skipped") and not x.get("finals") for x in s["sweeps"])
    assert story["again_s"] < 60  # no Ray started, no trial run


def test_a_changed_budget_or_data_is_never_kept_as_a_finished_sweep(story, tmp_path):
    from avbench.results.store import Store
    from avbench.search.suite import _finished

    home = story["home"]
    store = Store(None, home)
    same = [i for i in plan(load_suite(str(home.parent / "small.yaml")), home) if i.spec]
    assert len(same) == 3 and all(_finished(i, home, store) for i in same)
    changed = tmp_path / "small.yaml"  # the same suite with another budget: its sweeps must run (or say why)
    changed.write_text(SMALL.replace("epochs: 2", "epochs: 3"))
    assert not any(_finished(i, home, store) for i in plan(load_suite(str(changed)), home) if i.spec)
    for i in same:  # other data under the same name
        i.fingerprint = "0" * 16
        assert not _finished(i, home, store)


def test_impossible_pair_is_reported_and_skipped(story):
    tcaf = next(x for x in story["resumed"]["sweeps"] if x["method"] == "tcaf")
    assert tcaf["state"] == "skipped" and "temporal" in tcaf["reason"]


def test_the_suite_leaderboard_has_its_entries_in_every_format(story):
    s = story["again"]
    out = story["home"] / "suites" / "small"
    for fmt in ("md", "csv", "tex", "html"):
        assert (out / f"leaderboard.{fmt}").is_file()
    md = (out / "leaderboard.md").read_text()
    for m in ("avca", "cjme", "ale"):
        assert m in md
    assert "tcaf" not in md
    assert "3 methods" in s["cd"] or "2 or more datasets" in s["cd"]  # one dataset: no CD diagram, said why


def test_suite_status_reads_each_sweep(story):
    p = story["status"]
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {r["sweep"]: r for r in json.loads(p.stdout)["sweeps"]}
    assert all(rows[e]["state"] == "done" and rows[e]["finals"] == "2/2" for e in ENTRIES)
    assert rows["small.tcaf.synthetic"]["state"] == "skipped"


def test_progress_is_plain_lines_in_a_log_file(tmp_path):
    import io

    from rich.console import Console

    from avbench.search.suite_view import SuiteView, SweepState

    path = tmp_path / "p.yaml"
    path.write_text("methods: [avca, tcaf]\ndatasets: [synthetic]\ntrials: 4\nseeds: 2\n")
    states = [SweepState(i) for i in plan(load_suite(str(path)), home=tmp_path / "home")]
    states[0].phase, states[0].finals = "search", 1
    buf = io.StringIO()
    view = SuiteView("suite p", states, console=Console(file=buf, width=200), live=False, log_every=0.0)
    with view:
        view.tick()
    text = buf.getvalue()
    assert "suite p: 0/2 sweeps ended" not in text  # tcaf is skipped: it has ended
    assert "1/2 sweeps ended" in text
    assert "p.avca.synthetic: search; trials 0/4 done, 0 running; best val HM -; finals 1/2" in text
    assert "\x1b[" not in text  # no terminal control codes in a log file
