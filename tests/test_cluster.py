"""Sweeps on a real two-node Ray cluster, with the Optuna study and results store in PostgreSQL."""

import json
import os
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from avbench.errors import DataError  # noqa: E402
from avbench.results import leaderboard as lb  # noqa: E402
from avbench.results.store import Store  # noqa: E402

from conftest import REPO  # noqa: E402


@pytest.fixture
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    c.worker = worker
    yield c
    c.shutdown()


def _sweep(cluster, home, name, method="avca", trials=4, seeds=2, storage=None, db=None, tracking=None):
    cmd = [sys.executable, "-m", "avbench.cli", "sweep", "--method", method, "--dataset", "synthetic",
           "--trials", str(trials), "--seeds", str(seeds), "--epochs", "2", "--batches-per-epoch", "8",
           "--set", "batch_size=64", "--address", cluster.address, "--name", name, "--home", str(home),
           "--json", "--quiet"]
    for flag, value in (("--storage", storage), ("--db", db), ("--tracking-uri", tracking)):
        if value:
            cmd += [flag, value]
    env = {**os.environ, "PYTHONPATH": str(REPO), "AVBENCH_HOME": str(home)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_sweep_uses_both_nodes_and_postgres(cluster, tmp_path, pg_schema, pg_database):
    storage, db = pg_schema(), pg_schema()
    tracking = pg_database
    s = _finish(_sweep(cluster, tmp_path / "home", "two-nodes", storage=storage, db=db, tracking=tracking))
    assert len(s["nodes"]) == 2
    assert set(s["trial_nodes"]) == set(s["nodes"])  # trials ran on the head and on the worker
    assert s["trials"] == 4
    rows = Store(db).rows()
    assert len(rows) == 2 and {r["seed"] for r in rows} == {1, 2}  # the seeds after the search seed 0
    # the Optuna study lives in PostgreSQL
    import optuna

    study = optuna.load_study(study_name="two-nodes", storage=storage.replace("postgresql+psycopg", "postgresql+psycopg"))
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 4
    # MLflow on the shared database: the parent run and its children are there
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    parent = client.get_run(s["parent_run_id"])
    assert parent.data.tags["avbench.sweep"] == "two-nodes"


def test_two_sweeps_at_once_share_the_databases(cluster, tmp_path, pg_schema):
    storage, db = pg_schema(), pg_schema()
    a = _sweep(cluster, tmp_path / "home", "sweep-a", method="avca", trials=3, storage=storage, db=db)
    b = _sweep(cluster, tmp_path / "home", "sweep-b", method="ale", trials=3, storage=storage, db=db)
    sa, sb = _finish(a), _finish(b)
    assert len(sa["finals"]) == 2 and len(sb["finals"]) == 2
    rows = Store(db).rows()
    assert sorted((r["method"], r["seed"]) for r in rows) == [("ale", 1), ("ale", 2), ("avca", 1), ("avca", 2)]
    assert {r["entry"] for r in rows} == {"sweep-a", "sweep-b"}
    board = lb.compile_boards(rows)[0]
    assert board.cells[("avca", "synthetic")].n == 2 and board.cells[("ale", "synthetic")].n == 2


def test_a_killed_worker_node_does_not_lose_trials(cluster, tmp_path):
    home = tmp_path / "home"
    proc = _sweep(cluster, home, "lose-a-node", trials=4, seeds=1)
    deadline = time.time() + 240
    exp = home / "sweeps" / "lose-a-node"
    while time.time() < deadline and not list(exp.glob("trial_*/result.json")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.5)
    cluster.remove_node(cluster.worker, allow_graceful=False)  # the worker dies mid-sweep
    s = _finish(proc)
    assert s["trials"] == 4 and len(s["finals"]) == 1
    assert len(Store(None, home).rows()) == 1


def test_a_node_with_other_data_is_refused(cluster, tmp_path):
    from avbench.search.cluster import check_cluster

    ray.init(address=cluster.address)
    try:
        with pytest.raises(DataError, match="fingerprint"):
            check_cluster("synthetic", str(tmp_path), "0000000000000000", str(tmp_path / "sweeps"))
        nodes = check_cluster("synthetic", str(tmp_path), _synthetic_fingerprint(), str(tmp_path / "sweeps"))
        assert len(nodes) == 2
    finally:
        ray.shutdown()


def _synthetic_fingerprint():
    from avbench.data.synthetic import synthetic_benchmark

    return synthetic_benchmark().fingerprint


def test_without_address_a_sweep_starts_its_own_ray_beside_a_running_cluster(cluster, tmp_path):
    # a Ray started on this machine (here: the fixture's) is not joined unless --address or $RAY_ADDRESS names it
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "avbench.cli", "sweep", "--method", "devise", "--dataset", "synthetic",
           "--trials", "2", "--seeds", "1", "--epochs", "1", "--batches-per-epoch", "4", "--set", "batch_size=64",
           "--name", "own-ray", "--home", str(home), "--json", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"PYTHONPATH": str(REPO), "AVBENCH_HOME": str(home)})
    s = _finish(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    cluster_nodes = {n.node_id for n in cluster.list_all_nodes()}
    assert len(s["nodes"]) == 1 and not set(s["nodes"]) & cluster_nodes
    assert s["trials"] == 2 and len(s["finals"]) == 1


@pytest.mark.parametrize("how", ["--address", "$RAY_ADDRESS"])
def test_an_address_where_no_cluster_answers_is_one_line_at_once(tmp_path, how):
    cmd = [sys.executable, "-m", "avbench.cli", "sweep", "--method", "devise", "--dataset", "synthetic",
           "--trials", "1", "--home", str(tmp_path), "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if how == "--address":
        cmd += ["--address", "127.0.0.1:1"]
    else:
        env["RAY_ADDRESS"] = "127.0.0.1:1"
    p = subprocess.run(cmd, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines()[-1].startswith(f"avbench: error: {how} 127.0.0.1:1: nothing answers there")
    assert "Traceback" not in p.stderr


def test_the_ray_up_config_in_the_repository():
    import yaml

    cfg = yaml.safe_load((REPO / "cluster" / "ray-onprem.yaml").read_text())
    assert cfg["provider"]["type"] == "local" and cfg["provider"]["worker_ips"]
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("ray start --address" in c for c in cfg["worker_start_ray_commands"])
    assert all("AVBENCH_HOME=" in c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
               if "ray start" in c)
