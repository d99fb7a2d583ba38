"""Checks that a multi-node Ray cluster can run an avbench sweep, made at start-up.

What must be shared between the nodes, and how it is checked:

- the Ray Tune storage path (``<home>/sweeps``, or ``--home`` on a shared
  filesystem): each node writes a marker file there and the driver must see all
  of them;
- the dataset: each node loads it from the driver's data home when that path
  exists on the node, else from its own data home (``$AVBENCH_HOME`` or
  ``~/.avbench`` of the node); its fingerprint must equal the driver's;
- the databases (Optuna ``--storage``, results ``--db``, MLflow
  ``--tracking-uri``): only the driver uses them, but a driver restarted on
  another machine must find them, so clusters use PostgreSQL URLs or an MLflow
  tracking server.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from avbench.errors import ConfigError, DataError


# Ray kills a task worker idle for more than 1 s once the node has more workers than cores, which
# Ray Tune's trial actors make it have: a sweep's finals then start new processes (about 3 CPU s
# of imports and data each) where the previous sweep's finals left warm ones. Idle workers are
# kept for 5 minutes instead; at most as many as finals ran at once (one per slot) stay idle.
# Measured (benchmarks/suite_overhead.py, 8 sweeps on synthetic): 8 final worker processes -> 2,
# suite wall 108 s -> 91 s. A cluster started with `ray start` takes the same setting from
# RAY_idle_worker_killing_time_threshold_ms=300000 in the environment of `ray start`.
LOCAL_RAY_CONFIG = {"idle_worker_killing_time_threshold_ms": 300_000}


def start_ray(address: str | None) -> None:
    """Start Ray for a sweep or suite: the cluster at ``address`` (``--address``, else ``$RAY_ADDRESS``),
    or a new Ray on this machine with its cores and GPUs. Without an address, a Ray started earlier
    on this machine with ``ray start`` is not joined (plain ``ray.init()`` would, and then refuse the
    core count): a cluster is used only when asked for."""
    import logging

    import ray
    import torch

    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    given = "--address" if address else "$RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        host, _, port = address.rpartition(":")
        if "://" not in address and host and port.isdigit():  # host:port: fail in seconds, not after Ray's retries
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except OSError as e:
                raise ConfigError(f"{given} {address}: nothing answers there ({e.strerror or e}); start the "
                                  "cluster's head with `ray start --head`, or leave the address out") from None
        try:
            ray.init(address=address, **kw)
        except (OSError, ValueError, RuntimeError) as e:  # OSError: Ray's ConnectionError and TimeoutError
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"{given} {address}: no Ray cluster could be joined there ({first})") from None
    else:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=gpus, _system_config=LOCAL_RAY_CONFIG, **kw)


def node_benchmark(dataset: str, driver_home: str):
    """The benchmark as this node sees it (driver's home if present here, else the node's own)."""
    from avbench.data.registry import dataset_path, load_benchmark

    if dataset == "synthetic" or dataset_path(dataset, driver_home).is_file():
        return load_benchmark(dataset, driver_home), driver_home
    own = os.environ.get("AVBENCH_HOME") or "~/.avbench"
    return load_benchmark(dataset, own), own


def _probe(dataset: str, driver_home: str, storage: str, token: str) -> dict:
    import ray

    out = {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}
    try:
        b, home = node_benchmark(dataset, driver_home)
        out["fingerprint"], out["home"] = b.fingerprint, home
    except Exception as e:  # reported by the driver, naming the node
        out["data_error"] = str(e)
    try:
        Path(storage).mkdir(parents=True, exist_ok=True)
        (Path(storage) / f".avbench-probe-{token}-{out['node']}").write_text(out["host"])
    except OSError as e:
        out["storage_error"] = str(e)
    return out


def check_cluster(dataset: str, driver_home: str, fingerprint: str, storage: str) -> list[str]:
    """Probe every alive node; raise a one-line error naming the first node at fault."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    token = uuid.uuid4().hex[:8]
    probe = ray.remote(num_cpus=0)(_probe)
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            dataset, driver_home, storage, token
        )
        for n in nodes
    ]
    results = ray.get(refs, timeout=300)
    for r in results:
        where = f"node {r['node'][:12]} ({r['host']})"
        if "data_error" in r:
            raise DataError(f"{where}: cannot load dataset {dataset!r}: {r['data_error']}")
        if r["fingerprint"] != fingerprint:
            raise DataError(
                f"{where}: dataset {dataset!r} in {r['home']} has fingerprint {r['fingerprint']}, the driver's has "
                f"{fingerprint}; import the same data on every node or put --home on a shared filesystem"
            )
        if "storage_error" in r:
            raise ConfigError(f"{where}: cannot write the sweep storage path {storage}: {r['storage_error']}")
        marker = Path(storage) / f".avbench-probe-{token}-{r['node']}"
        if not marker.exists():
            raise ConfigError(
                f"{where}: the sweep storage path {storage} is not shared with the driver (a file written there "
                "is not visible here); put --home on a filesystem every node mounts at the same path"
            )
        marker.unlink()
    return [r["node"] for r in results]
