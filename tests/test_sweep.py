"""Sweeps with real Ray Tune, Optuna and MLflow, run as a user runs them (the CLI in a subprocess)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")

from avbench.search.space import load_space  # noqa: E402
from avbench.search.sweep import trial_resources, tune_space  # noqa: E402

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


def _cmd(home, trials=5, seeds=2):
    return [sys.executable, "-m", "avbench.cli", "sweep", "--method", "avca", "--dataset", "synthetic",
            "--trials", str(trials), "--seeds", str(seeds), "--epochs", "2", "--batches-per-epoch", "10",
            "--set", "batch_size=64", "--home", str(home), "--json", "--quiet"]


def _env(home):
    return {**os.environ, "PYTHONPATH": str(REPO), "AVBENCH_HOME": str(home)}


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


def _result_lines(home):
    out = {}
    for f in (home / "sweeps" / NAME).glob("trial_*/result.json"):
        out[f.parent.name] = len(f.read_text().splitlines())
    return out


def test_sweep_survives_kill_9_and_resumes_then_stores_finals(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.Popen(_cmd(home), env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and len(_completed(home)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(1)
        time.sleep(2)  # let Tune save its experiment state after those trials
        before, lines_before = _completed(home), _result_lines(home)
        assert len(before) >= 2
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

    again = subprocess.run(_cmd(home), env=_env(home), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["resumed"] is True and summary["trials"] == 5
    after = _completed(home)
    assert len(after) == 5  # the study kept its history: no trial lost, none doubled
    for number, (params, value) in before.items():
        assert after[number] == (params, value)  # finished trials neither rerun nor changed
    lines_after = _result_lines(home)
    finished_dirs = [d for d, n in lines_before.items() if n == 2]  # 2 epochs reported: finished
    assert all(lines_after[d] == 2 for d in finished_dirs)
    assert [f["seed"] for f in summary["finals"]] == [0, 1]

    from avbench.results.store import Store

    store = Store(None, home)
    rows = store.rows()
    assert len(rows) == 2 and {r["seed"] for r in rows} == {0, 1}
    assert all(r["mlflow_run_id"] for r in rows)

    # MLflow: a parent run per sweep, a nested child per trial with params and per-epoch metrics, tagged finals
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["tracking_uri"])
    exp = client.get_experiment_by_name("avbench")
    parent = client.get_run(summary["parent_run_id"])
    for tag in ("avbench.method", "avbench.dataset", "avbench.protocol", "avbench.data_fingerprint",
                "avbench.git_revision"):
        assert tag in parent.data.tags
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    trials = [c for c in children if c.data.tags.get("avbench.kind") == "trial"]
    finals = [c for c in children if c.data.tags.get("avbench.final") == "true"]
    assert len(trials) >= 5 and len(finals) == 2
    some = trials[0]
    assert "lr" in some.data.params
    hist = client.get_metric_history(some.info.run_id, "val_hm")
    assert [m.step for m in hist][:1] == [1]
    assert {"test_hm", "test_zsl", "test_s", "test_u", "beta"} <= set(finals[0].data.metrics)

    # a third run: nothing to do, nothing duplicated
    third = subprocess.run(_cmd(home), env=_env(home), capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    s3 = json.loads(third.stdout.strip().splitlines()[-1])
    assert s3["finals"] == [] and s3["finals_already_stored"] == [0, 1]
    assert len(Store(None, home).rows()) == 2

    lb = subprocess.run([sys.executable, "-m", "avbench.cli", "leaderboard", "--home", str(home), "--format", "md"],
                        env=_env(home), capture_output=True, text=True, timeout=120)
    assert lb.returncode == 0 and "| avca |" in lb.stdout and "(2)" in lb.stdout


def test_malformed_space_is_a_one_line_error(tmp_path):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "avca.yaml").write_text("method: avca\nparameters:\n  lr: {type: float, low: 1, high: 0.1}\n")
    env = {**_env(tmp_path), "AVBENCH_SEARCH_SPACES": str(spaces)}
    r = subprocess.run(_cmd(tmp_path / "home"), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "avca.yaml: parameters.lr" in lines[0]
