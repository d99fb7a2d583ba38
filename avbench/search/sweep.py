"""Sweeps: Ray Tune + Optuna over stage 1 of the protocol, finals to the store, MLflow logs.

    avbench sweep --method avca --dataset activitynet --trials 40 --search-seeds 2 --seeds 3

This module is the driver: the sweep's settings (``SweepSpec``), the search space
as Ray Tune domains, trial resources, the Optuna storage and ``sweep()``. What a
Ray worker runs is in ``search.trial``, the MLflow logging in ``search.tracking``,
the live view in ``search.live``.

- Seeds: trials train stage 1 with the *search seeds* 0..K-1 (``search_seeds=K``)
  and report the per-epoch mean over them; the best configuration's finals use
  the S following seeds K..K+S-1 (``seeds=S``), so no final repeats a run the
  search selected on (its max over trials would bias that final upwards).
- Each trial reports, every epoch, the validation metrics after calibrated
  stacking (``ray.tune.report``); the objective is the best validation HM so far.
  Optuna's TPE (Ray Tune's ``OptunaSearch``) proposes configurations, ASHA stops
  poor trials early. The test split is never loaded by a trial.
- When the search ends, the best configuration runs the full protocol for the S
  final seeds (Ray tasks); those results go to the results store as one *entry*
  named after the sweep (``entry_kind="sweep"``, with the search seeds).
- Resume: the Ray experiment lives in ``<home>/sweeps/<name>`` and the Optuna
  study in a journal file beside it (or a PostgreSQL URL given by ``--storage``).
  Rerunning the same command restores the experiment with ``Tuner.restore``:
  finished trials are kept, unfinished ones restart, the study keeps its history;
  finals already in the store (same entry, configuration and seed) are not rerun.
  Ray Tune resumes an experiment with the settings it was started with, so a
  rerun that changes them (trials, search seeds, settings, data) is refused.
- MLflow: see ``search.tracking`` (a parent run per sweep, a child per trial and
  per final; the best so far in the parent's tags).
"""

from __future__ import annotations

import os
import time

from avbench.errors import ConfigError
from avbench.search.resume import optuna_storage
from avbench.search.sweep_setup import PreparedSweep, SweepSpec, quiet_libraries, tune_space
from avbench.search.trial import OBJECTIVE, run_final, run_trial


def sweep(spec: SweepSpec, console=None, live: bool = True, on_final=None) -> dict:
    """Run (or resume) a sweep; returns a summary with the best config and the final results."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # save experiment state often: kill -9 loses little
    quiet_libraries()
    import ray

    from avbench.search.live import LiveView
    from avbench.search.tracking import SweepCallback, activate, deactivate

    prep = PreparedSweep(spec)
    name, exp_path = prep.name, prep.exp_path
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    tracker_init = pool.submit(prep.open_tracker)

    started_ray = not ray.is_initialized()
    if started_ray:
        from avbench.search.cluster import start_ray

        start_ray(spec.address)
    try:
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        if len(nodes) > 1:  # a cluster: storage path and data must be the same everywhere
            from avbench.search.cluster import check_cluster

            check_cluster(prep.dataset, str(prep.home), prep.fingerprint, str(prep.sweeps_dir))
        total_cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1)
        max_conc = spec.max_concurrent or max(1, int(total_cpus // max(spec.cpus_per_trial, 1e-9)))
        tracker = tracker_init.result()  # MLflow was set up while Ray started
        pool.shutdown()
        ctx = prep.start(tracker, max_conc)
        view = LiveView(spec.trials, console=console, enabled=live)
        activate(name, tracker, view)  # what the (possibly restored) Tune callback logs to
        tuner = _tuner(prep, {**tune_space(prep.space), "avbench": ctx}, max_conc, SweepCallback(name))
        t_search = time.time()
        with view:
            grid = tuner.fit()
        search_s = time.time() - t_search
        known = {r.metrics.get("trial_id") for r in grid if r.metrics}
        known |= {os.path.basename(str(r.path)).removeprefix("trial_") for r in grid if r.path}
        tracker.close_lost_trials(known)
        try:
            best = grid.get_best_result(metric=OBJECTIVE, mode="max", scope="all")
        except RuntimeError:  # no trial reported the objective
            best = None
        if best is None or best.config is None:
            errors = [str(e).strip().splitlines()[-1] for e in grid.errors if str(e).strip()]
            why = f"; e.g. {errors[0]}" if errors else ""
            raise ConfigError(f"sweep {name}: no trial finished (see {exp_path}){why}")
        params = {k: v for k, v in best.config.items() if k != "avbench"}
        trials_done = sum(1 for r in grid if r.metrics)
        trial_nodes = sorted({r.metrics.get("node_id") for r in grid if r.metrics and r.metrics.get("node_id")})
        for r in grid:
            df = r.metrics_dataframe
            if df is not None and "train_seconds" in df:
                prep.busy += float(df["train_seconds"].sum())

        # ---- finals: the best configuration through the whole protocol, on seeds no trial used (Ray tasks)
        todo = prep.finals_for(params, float(best.metrics[OBJECTIVE]), best.metrics.get("trial_id"))
        remote = ray.remote(num_cpus=spec.cpus_per_trial, num_gpus=prep.resources["gpu"])(run_final)
        refs = {s: remote.remote(ctx, params, s) for s in todo}
        t_final = time.time()
        for s, ref in refs.items():
            rec = prep.record_final(s, ray.get(ref))
            if rec is not None and on_final:
                on_final(rec)
        final_s = time.time() - t_final
    except BaseException:
        prep.fail()
        raise
    finally:
        deactivate(name)
        if started_ray:
            ray.shutdown()
    return prep.finish(trials_done, search_s, final_s, nodes, trial_nodes, max_conc)


def asha(epochs: int):
    """The early stopping of a sweep's trials: ASHA over epochs (one report per epoch)."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=max(1, epochs // 4),
                         reduction_factor=3)


TUNE_CONFIG = dict(
    reuse_actors=True,  # keep trial worker processes (torch imported, data loaded once per worker)
    trial_name_creator=lambda t: f"trial_{t.trial_id}",
    trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
)


def _tuner(prep: PreparedSweep, param_space: dict, max_conc: int, callback):
    """A new Ray Tune experiment (Optuna TPE, ASHA), or the interrupted one restored as it was started."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    trainable = tune.with_resources(run_trial, prep.resources)
    if prep.resumed:  # the run config and callback come back from the experiment's saved state
        return tune.Tuner.restore(str(prep.exp_path), trainable, resume_unfinished=True, resume_errored=True,
                                  param_space=param_space)
    name = prep.name
    searcher = OptunaSearch(
        metric=OBJECTIVE,
        mode="max",
        study_name=name,
        storage=optuna_storage(prep.spec.storage, prep.sweeps_dir / f"{name}.optuna.journal"),
        seed=prep.spec.sampler_seed,
    )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=OBJECTIVE,
            mode="max",
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_conc),
            scheduler=asha(prep.epochs),
            num_samples=prep.spec.trials,
            **TUNE_CONFIG,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(prep.sweeps_dir),
            verbose=0,
            callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=2),
        ),
    )
