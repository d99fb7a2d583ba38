"""Sweeps with real Ray Tune, Optuna and MLflow, run as a user runs them (the CLI in a subprocess)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from itertools import islice

import pytest

pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")

import torch  # noqa: E402

from avbench.errors import ConfigError  # noqa: E402
from avbench.protocol.machine import hardware  # noqa: E402
from avbench.search.space import load_space  # noqa: E402
from avbench.search.resume import check_settings as _check_settings  # noqa: E402
from avbench.search.sweep_setup import seed_plan, trial_resources, tune_space  # noqa: E402

from conftest import REPO  # noqa: E402

NAME = "avca-synthetic-avca2022"


def test_gpu_fractions_only_where_cuda_is_present():
    assert trial_resources(1, 0.25, cuda=False) == {"cpu": 1.0, "gpu": 0.0}
    assert trial_resources(2, 0.25, cuda=True) == {"cpu": 2.0, "gpu": 0.25}


def test_space_becomes_ray_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = tune_space(load_space("avca", "vggsound"))
    assert isinstance(space["lr"], Float) and isinstance(space["depth"], Integer)
    assert isinstance(space["batch_size"], Categorical) and list(space["batch_size"].categories) == [32, 64, 128]
    assert space["depth"].upper == 4  # randint's upper bound is exclusive: high 3 stays reachable


def test_final_seeds_follow_the_search_seeds():
    assert seed_plan(1, 3) == ([0], [1, 2, 3])
    assert seed_plan(2, 3) == ([0, 1], [2, 3, 4])
    for k, s, flag in ((0, 3, "--search-seeds 0"), (2, -1, "--seeds -1")):
        with pytest.raises(ConfigError, match=flag):
            seed_plan(k, s)


def test_a_resume_with_other_settings_is_refused(tmp_path):
    settings = {"trials": 5, "search_seeds": 1, "settings": {"epochs": 2, "lr": 0.001}}
    _check_settings(tmp_path, "s", settings, restoring=False)  # a new experiment records its settings
    _check_settings(tmp_path, "s", settings, restoring=True)  # the same ones resume
    for changed, named in (({"search_seeds": 2}, "search_seeds=2"), ({"trials": 9}, "trials=9"),
                           ({"settings": {"epochs": 3, "lr": 0.001}}, "settings.epochs=3")):
        with pytest.raises(ConfigError, match=named) as e:
            _check_settings(tmp_path, "s", {**settings, **changed}, restoring=True)
        assert len(str(e.value).splitlines()) == 1
    # a setting earlier versions did not record: its value then (protocol_options: {}, the platform's) resumes;
    # another (a reference sweep's rules, e.g. the stage2_lr added since) is refused
    since = {"protocol_options": {}}
    _check_settings(tmp_path, "s", {**settings, "protocol_options": {}}, restoring=True, recorded_since=since)
    with pytest.raises(ConfigError, match=r"^sweep s: was started by an earlier avbench that did not record "
                                          r"protocol_options \(then always \{\}\); this version has protocol_options="
                                          r"\{'stage2_lr': 'val-plateau'\}.*another --name$"):
        _check_settings(tmp_path, "s", {**settings, "protocol_options": {"stage2_lr": "val-plateau"}},
                        restoring=True, recorded_since=since)
    _check_settings(tmp_path / "new", "s", {**settings, "protocol_options": {"stage2_lr": "val-plateau"}},
                    restoring=False)
    with pytest.raises(ConfigError, match=r"protocol_options.stage2_lr='replay', but the sweep was started with "
                                          r"protocol_options.stage2_lr='val-plateau'"):
        _check_settings(tmp_path / "new", "s", {**settings, "protocol_options": {"stage2_lr": "replay"}},
                        restoring=True, recorded_since=since)


def test_a_study_left_by_a_sweep_whose_settings_are_gone_is_refused(tmp_path):
    from optuna.storages.journal import JournalFileBackend

    from avbench.search.resume import check_study

    exp, journal = tmp_path / "sweeps" / "s", tmp_path / "sweeps" / "s.optuna.journal"
    settings = {"trials": 5, "search_seeds": 3, "settings": {"epochs": 2}}
    check_study(None, journal, "s", exp, settings)  # nothing stored yet: a new sweep starts
    _check_settings(exp, "s", settings, restoring=False)
    study = optuna.create_study(study_name="s", direction="maximize",
                                storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2), n_trials=2)  # trials scored on seeds 0-2
    check_study(None, journal, "s", exp, settings)  # the same settings on record: its trials count
    fewer = {**settings, "search_seeds": 1}
    with pytest.raises(ConfigError, match="other settings") as e:  # e.g. a sweep killed before Ray saved
        check_study(None, journal, "s", exp, fewer)
    assert len(str(e.value).splitlines()) == 1 and "2 trials" in str(e.value)
    shutil.rmtree(exp)  # its folder deleted to start over: the study beside it must not steer the new one
    with pytest.raises(ConfigError, match=f"delete {journal}"):
        check_study(None, journal, "s", exp, fewer)
    check_study(None, journal, "other", tmp_path / "sweeps" / "other", fewer)  # another name: its own study


# ---------------------------------------------------------------------------- one sweep's story
# One small sweep, interrupted twice (kill -9 during the search, kill -9 during the finals) and
# completed by a third run; the tests below each check one part of it.
#
# Its space has one parameter, lr, among four values; Optuna's TPE seeded 0 draws its first
# trials at random: 1e-7, 3e-7, then 3e-3 (asserted below, as a precondition). With
# --max-concurrent 1 the trials run in that order, so when the first run is killed (after
# trial 0 finished) the best so far, already logged to MLflow, is a learning rate too small to
# learn anything; the resumed run's third trial beats it. That is a resumed sweep whose best
# configuration changes, which is how it happens to users too (an interrupted sweep whose later
# trials win): MLflow must accept the new best and the finals must be those of the new best.
SPACE = "method: avca\nparameters:\n  lr: {type: categorical, choices: [0.003, 1.0e-7, 0.001, 3.0e-7]}\n"
BAD, GOOD = (1e-7, 3e-7), 0.003
SEARCH_SEEDS, FINAL_SEEDS = [0, 1], [2, 3, 4]


def _cmd(home, trials=3, seeds=3, extra=()):
    # 30 batches: a trial must outlast the 2 s the story waits after trial 0 before its kill, or trial 2's better
    # lr can already be the best at the kill (seen once with 10 batches on a quiet machine)
    return [sys.executable, "-m", "avbench.cli", "sweep", "--method", "avca", "--dataset", "synthetic",
            "--trials", str(trials), "--seeds", str(seeds), "--epochs", "2", "--batches-per-epoch", "30",
            "--set", "batch_size=64", "--home", str(home), "--json", "--quiet", *extra]


def _env(home, spaces=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "AVBENCH_HOME": str(home)}
    if spaces:
        env["AVBENCH_SEARCH_SPACES"] = str(spaces)
    return env


def _study(home):
    from optuna.storages.journal import JournalFileBackend

    path = home / "sweeps" / f"{NAME}.optuna.journal"
    if not path.exists():
        return []
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.load_study(study_name=NAME, storage=storage).trials
    except KeyError:
        return []


def _completed(home):
    return {t.number: (t.params, t.value) for t in _study(home) if t.state.name == "COMPLETE"}


def _trial_results(home):
    """Each trial directory's reported results (one line per epoch reported)."""
    return {f.parent.name: [json.loads(line) for line in f.read_text().splitlines()]
            for f in (home / "sweeps" / NAME).glob("trial_*/result.json")}


def _kill_when(proc, ready, what, settle=0.0, timeout=300):
    """Wait until ready() is true (and ``settle`` seconds more), then kill -9 the driver and the Ray
    processes it started."""
    try:
        deadline = time.time() + timeout
        while not ready():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.3)
        time.sleep(settle)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the driver
        proc.wait(30)
        time.sleep(1)
        try:  # then clear the local Ray processes that driver had started (they are orphans now)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()


def _mlflow(home):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("avbench")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parent = next(r for r in runs if r.data.tags.get("avbench.kind") == "sweep")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, children


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    from avbench.results.store import Store

    root = tmp_path_factory.mktemp("sweep_story")
    home, spaces = root / "home", root / "spaces"
    spaces.mkdir()
    (spaces / "avca.yaml").write_text(SPACE)
    cmd = _cmd(home, extra=("--search-seeds", "2", "--max-concurrent", "1"))
    env = _env(home, spaces)
    out = {"home": home}

    # 1. killed during the search, once trial 0 has finished (and Tune has saved that)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _kill_when(first, lambda: len(_completed(home)) >= 1, "a finished trial", settle=2)  # Tune saves every second
    out["completed_at_kill"], out["results_at_kill"] = _completed(home), _trial_results(home)
    out["parent_at_kill"] = _mlflow(home)[1]

    # 2. resumed, then killed during the finals, once the first final is stored
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _kill_when(second, lambda: len(Store(None, home).rows(columns=["id"])) >= 1, "a stored final")
    out["rows_at_kill"] = Store(None, home).rows()

    # 3. resumed again: runs the finals not yet stored
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    out["summary"] = json.loads(third.stdout.strip().splitlines()[-1])
    out["rows"] = Store(None, home).rows()
    out["client"], out["parent"], out["children"] = _mlflow(home)
    return out


def test_resume_after_kill_9_keeps_finished_trials(story):
    home, s = story["home"], story["summary"]
    assert s["resumed"] is True and s["trials"] == 3
    after = _completed(home)
    assert len(after) == 3  # the study kept its history: no trial lost, none doubled
    for number, (params, value) in story["completed_at_kill"].items():
        assert after[number] == (params, value)  # finished trials neither rerun nor changed
    results = _trial_results(home)
    for trial, lines in story["results_at_kill"].items():
        if len(lines) == 2:  # both epochs reported before the kill: finished, not rerun
            assert results[trial] == lines
    # MLflow: one child run per trial, found again (not made anew) by both resumed runs; a trial
    # started just before the kill but never saved by Tune is closed as KILLED (the search reran it)
    runs = [c for c in story["children"] if c.data.tags.get("avbench.kind") == "trial"]
    lost = [c for c in runs if "avbench.lost" in c.data.tags]
    trials = [c for c in runs if c not in lost]
    assert len(trials) == 3 and all(c.info.status == "FINISHED" for c in trials)
    assert all(c.info.status == "KILLED" for c in lost)
    assert "lr" in trials[0].data.params
    assert [m.step for m in story["client"].get_metric_history(trials[0].info.run_id, "val_hm")][:1] == [1]


def test_a_resumed_sweep_with_a_new_best_logs_it_and_runs_its_finals(story):
    before = story["parent_at_kill"].data.tags
    assert float(before["avbench.best.lr"]) in BAD, "precondition: trial 0 drew a bad lr (see the story's comment)"
    s, tags = story["summary"], story["parent"].data.tags
    assert s["best_config"] == {"lr": GOOD}
    assert float(tags["avbench.best.lr"]) == GOOD and tags["avbench.best_trial"] != before["avbench.best_trial"]
    assert tags["avbench.best_config_hash"] == s["best_config_hash"]
    assert story["parent"].info.status == "FINISHED"
    assert {r["config_hash"] for r in story["rows"]} == {s["best_config_hash"]}  # the finals are the new best's
    assert all(r["config"]["lr"] == GOOD for r in story["rows"])


def test_a_sweep_killed_during_its_finals_stores_each_seed_once(story):
    at_kill = sorted(r["seed"] for r in story["rows_at_kill"])
    assert 1 <= len(at_kill) < len(FINAL_SEEDS), f"precondition: killed during the finals (stored {at_kill})"
    s, rows = story["summary"], story["rows"]
    assert s["finals_already_stored"] == at_kill
    assert sorted(f["seed"] for f in s["finals"]) == sorted(set(FINAL_SEEDS) - set(at_kill))
    assert sorted(r["seed"] for r in rows) == FINAL_SEEDS  # each seed exactly once
    assert {r["entry"] for r in rows} == {NAME} and {r["entry_kind"] for r in rows} == {"sweep"}
    finals = [c for c in story["children"] if c.data.tags.get("avbench.final") == "true"]
    assert sorted(int(c.data.tags["avbench.seed"]) for c in finals) == FINAL_SEEDS  # one MLflow run per seed
    assert all(c.info.status == "FINISHED" and "test_hm" in c.data.metrics for c in finals)
    by_seed = {int(c.data.tags["avbench.seed"]): c.info.run_id for c in finals}
    assert {r["seed"]: r["mlflow_run_id"] for r in rows} == by_seed

    lb = subprocess.run([sys.executable, "-m", "avbench.cli", "leaderboard", "--home", str(story["home"]),
                         "--format", "md"], env=_env(story["home"]), capture_output=True, text=True, timeout=120)
    assert lb.returncode == 0 and "| avca |" in lb.stdout and "(3)" in lb.stdout


def test_finals_use_seeds_no_trial_used_and_record_both(story):
    s, rows, tags = story["summary"], story["rows"], story["parent"].data.tags
    assert s["search_seeds"] == SEARCH_SEEDS and s["final_seeds"] == FINAL_SEEDS
    assert not set(s["search_seeds"]) & set(s["final_seeds"])
    trials = _trial_results(story["home"]).values()
    trial_seeds = {tuple(lines[0]["config"]["avbench"]["search_seeds"]) for lines in trials}
    assert trial_seeds == {tuple(SEARCH_SEEDS)}  # what the trials trained with
    assert all(r["search_seeds"] == SEARCH_SEEDS for r in rows)  # the store records both sets
    assert not {r["seed"] for r in rows} & set(SEARCH_SEEDS)
    # each final records the machine and torch build of the trial process that computed it
    assert {(r["hardware"], r["torch_version"]) for r in rows} == {(hardware(torch.device("cpu")), torch.__version__)}
    assert tags["avbench.search_seeds"] == "0,1" and tags["avbench.final_seeds"] == "2,3,4"  # and MLflow
    for c in story["children"]:
        if c.data.tags.get("avbench.final") == "true":
            assert c.data.params["seed"] == c.data.tags["avbench.seed"]
            assert c.data.tags["avbench.search_seeds"] == "0,1"
            assert c.data.tags["avbench.hardware"] == hardware(torch.device("cpu"))  # as in the store


def test_each_epoch_reports_the_mean_over_the_search_seeds(story):
    """The reported val_hm of every trial and epoch is the mean of the two seeds' stage-1 HMs,
    computed here directly with stage1_epochs (the trials ran with one torch thread, as here)."""
    from avbench.data.registry import load_benchmark
    from avbench.protocol.run import stage1_epochs

    bench = load_benchmark("synthetic", story["home"])
    checked = 0
    for lines in _trial_results(story["home"]).values():
        config = lines[0]["config"]
        ctx, params = config["avbench"], {k: v for k, v in config.items() if k != "avbench"}
        epochs = max(line["epoch"] for line in lines)  # as many as the trial reported (ASHA may stop it early)
        per_seed = {seed: [100 * r.val["HM"] for r in islice(stage1_epochs(
            bench, "avca", seed=seed, overrides={**ctx["overrides"], **params}, text_order=ctx["text_order"]), epochs)]
            for seed in SEARCH_SEEDS}
        best = -1.0
        for line in lines:
            e = line["epoch"]
            if e == 1:
                best = -1.0  # a restarted trial reports from epoch 1 again
            hm = [per_seed[seed][e - 1] for seed in SEARCH_SEEDS]
            assert line["val_hm"] == pytest.approx(sum(hm) / 2, abs=1e-9)
            assert [line[f"val_hm_seed{seed}"] for seed in SEARCH_SEEDS] == pytest.approx(hm, abs=1e-9)
            best = max(best, sum(hm) / 2)
            assert line["best_val_hm"] == pytest.approx(best, abs=1e-9)
            checked += 1
    assert checked >= 4


def test_malformed_space_is_a_one_line_error(tmp_path):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "avca.yaml").write_text("method: avca\nparameters:\n  lr: {type: float, low: 1, high: 0.1}\n")
    env = {**_env(tmp_path), "AVBENCH_SEARCH_SPACES": str(spaces)}
    r = subprocess.run(_cmd(tmp_path / "home"), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "avca.yaml: parameters.lr" in lines[0]
