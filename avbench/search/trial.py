"""What runs in a Ray worker during a sweep: the trial function and the final function.

- ``run_trial``: stage 1 of the protocol for one configuration, on each of the
  sweep's *search seeds* (``ctx["search_seeds"]``, 0..K-1). The K runs advance one
  epoch at a time in turn (``stage1_epochs`` generators, each restoring its own
  random state, so each seed gives the numbers it gives alone), and after every
  epoch the trial reports (``ray.tune.report``, once per epoch, as ASHA expects)
  the mean over the seeds of each validation metric; the objective
  (``best_val_hm``) is the best mean validation HM so far. The test split is
  never loaded by a trial.
- ``run_final``: the whole protocol (both stages, the single test evaluation) for
  one final seed; the finals use seeds that no trial used.

Both load the dataset as the worker's node has it and check its fingerprint
against the driver's.
"""

from __future__ import annotations

import time

from avbench.errors import ConfigError

OBJECTIVE = "best_val_hm"


def release_memory() -> None:
    """Return the C heap's free memory to the system (glibc ``malloc_trim``; nothing elsewhere).

    A reused worker runs trial after trial of different methods, each in a new thread (Ray Tune's
    function trainable), and glibc keeps what they freed: on the synthetic demo suite (one dataset,
    11 methods) a worker's resident memory grew from 0.4 to 2.2 GB over 30 trials and finals; with
    this call before each it stayed under 0.95 GB, at no measurable cost in time."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        pass


def worker_benchmark(ctx: dict):
    """In a Ray worker: the run's thread count, and the dataset as this node has it (fingerprint checked).
    Called as every trial and final starts; it first returns the previous ones' freed memory."""
    import torch

    from avbench.search.cluster import node_benchmark

    release_memory()
    torch.set_num_threads(max(1, int(ctx["threads"])))
    bench, _ = node_benchmark(ctx["dataset"], ctx["home"])
    if bench.fingerprint != ctx["fingerprint"]:
        raise ConfigError(
            f"dataset {ctx['dataset']} on this node has fingerprint {bench.fingerprint}, the sweep uses "
            f"{ctx['fingerprint']}: import the same data on every node"
        )
    return bench


def search_seeds(ctx: dict) -> list[int]:
    """The seeds a trial trains stage 1 with: the sweep's search seeds 0..K-1."""
    return [int(s) for s in ctx["search_seeds"]]


def epoch_metrics(records, seeds: list[int]) -> dict:
    """One epoch's report from the K seeds' epoch records: the mean of each metric, and each seed's HM."""
    n = len(records)

    def mean(values) -> float:
        return sum(values) / n

    out = {
        "val_hm": mean(100 * r.val["HM"] for r in records),
        "val_s": mean(100 * r.val["S"] for r in records),
        "val_u": mean(100 * r.val["U"] for r in records),
        "val_zsl": mean(100 * r.val["ZSL"] for r in records),
        "beta": mean(r.val["beta"] for r in records),
        "loss": mean(r.loss for r in records),
        "lr": mean(r.lr for r in records),
        "epoch": records[0].epoch,
    }
    if n > 1:
        out.update({f"val_hm_seed{s}": 100 * r.val["HM"] for s, r in zip(seeds, records)})
    return out


def run_trial(config: dict) -> None:
    import ray
    from ray import tune

    from avbench.protocol.run import stage1_epochs

    ctx = config["avbench"]
    params = {k: v for k, v in config.items() if k != "avbench"}
    bench = worker_benchmark(ctx)
    node = ray.get_runtime_context().get_node_id()
    seeds = search_seeds(ctx)
    runs = [
        stage1_epochs(
            bench,
            ctx["method"],
            protocol=ctx["protocol"],
            seed=seed,
            overrides={**ctx["overrides"], **params},
            text_order=ctx["text_order"],
            device=ctx["device"],
            memory_budget=memory_budget(ctx),
        )
        for seed in seeds
    ]
    best, t = -1.0, time.perf_counter()
    for records in zip(*runs):  # one epoch of every seed, in turn
        report = epoch_metrics(records, seeds)
        best = max(best, report["val_hm"])
        # train_seconds: this epoch's training + validation over all seeds (for overhead figures); the
        # report's wait for the driver is not counted
        tune.report({OBJECTIVE: best, **report, "train_seconds": time.perf_counter() - t, "node_id": node,
                     "peak_rss_mb": peak_rss_mb()})
        t = time.perf_counter()


def run_final(ctx: dict, params: dict, seed: int) -> dict:
    """Full protocol for one final seed (a Ray task); returns RunResult as a dict."""
    from avbench.protocol.run import run_protocol

    import torch

    bench = worker_benchmark(ctx)
    try:
        r = run_protocol(
            bench,
            ctx["method"],
            protocol=ctx["protocol"],
            seed=int(seed),
            overrides={**ctx["overrides"], **params},
            text_order=ctx["text_order"],
            device=ctx["device"],
            memory_budget=memory_budget(ctx),
        )
    finally:  # the worker stays warm for later finals (search/cluster.LOCAL_RAY_CONFIG): hold no GPU memory idle
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    # this node's code, not the driver's: a cluster node with another checkout computes other numbers
    from avbench import __version__
    from avbench.results.provenance import git_revision

    r.git_revision, r.avbench_version = git_revision(), __version__
    return r.to_dict()


def peak_rss_mb() -> float:
    """This worker process's peak resident memory so far (MB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_budget(ctx: dict):
    """The sweep's --memory-budget, or this node's default budget shared by the concurrent trials
    (a worker reads a split larger than its share from the file instead of loading it)."""
    if ctx.get("memory_budget"):
        return ctx["memory_budget"]
    from avbench.protocol.feed import default_budget
    from avbench.protocol.machine import pick_device

    return default_budget(pick_device(ctx["device"])) // max(1, int(ctx.get("concurrent") or 1))
