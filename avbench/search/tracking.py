"""MLflow logging of a sweep (driver only): the runs, the schema lock, the Ray Tune callback.

- A parent run per sweep (found again by its ``avbench.sweep`` tag when the sweep
  is resumed), tagged with the method, dataset, protocol, data fingerprint, code
  revision, the search seeds and the final seeds (``avbench.search_seeds``,
  ``avbench.final_seeds``).
- A nested child run per trial (its parameters, its per-epoch metrics) and per
  final (tagged ``avbench.final``, ``avbench.seed``, ``avbench.config_hash``; its
  parameters, the seed included, and test metrics). A child is identified by a key
  tag (``avbench.key``: the Ray trial id, or ``final-<config hash>-<seed>``), so a
  resumed sweep finds and reuses the children it already made: a final interrupted
  and rerun keeps one run.
- The best configuration so far lives in the parent's *tags* (``avbench.best.<name>``,
  ``avbench.best_trial``, and at the end ``avbench.best_config_hash``) and its
  metric ``best_best_val_hm``. Tags are mutable, unlike MLflow parameters: the best
  moves while the sweep runs and may move again when an interrupted sweep resumes.
- The Ray Tune callback (``SweepCallback``) logs trials as they run. Ray Tune saves
  it with the experiment and brings it back on resume, so it holds only the sweep's
  name and finds the running driver's tracker through :func:`activate`.
"""

from __future__ import annotations

import time

from ray import tune

from avbench.results.locks import schema_lock
from avbench.search.trial import OBJECTIVE

MLFLOW_LOCK_KEY = 0x6D6C666C  # PostgreSQL advisory locks serialising MLflow's / Optuna's schema creation
OPTUNA_LOCK_KEY = 0x6F70746E
TRIAL_METRICS = (OBJECTIVE, "val_hm", "val_s", "val_u", "val_zsl", "beta", "loss", "lr")


class Tracker:
    """Parent run per sweep, nested child runs per trial and per final (MlflowClient, explicit ids)."""

    def __init__(self, uri: str, sweep: str, tags: dict):
        from mlflow.tracking import MlflowClient

        with schema_lock(uri, MLFLOW_LOCK_KEY):  # MLflow creates/migrates its tables on first use
            self.client = MlflowClient(tracking_uri=uri)
            exp = self.client.get_experiment_by_name("avbench")
            if exp is None:
                try:
                    self.exp_id = self.client.create_experiment("avbench")
                except Exception:  # created meanwhile by another sweep
                    self.exp_id = self.client.get_experiment_by_name("avbench").experiment_id
            else:
                self.exp_id = exp.experiment_id
        found = self._search(f"tags.`avbench.sweep` = '{sweep}' and tags.`avbench.kind` = 'sweep'")
        if found:
            self.parent = found[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
        else:
            self.parent = self.client.create_run(
                self.exp_id, run_name=sweep, tags={**tags, "avbench.sweep": sweep, "avbench.kind": "sweep"}
            ).info.run_id
        self.sweep, self.tags = sweep, tags
        self.children: dict[str, str] = {}
        for r in self._search(f"tags.`mlflow.parentRunId` = '{self.parent}'"):
            key = r.data.tags.get("avbench.key") or r.data.tags.get("ray.trial_id")
            if key:
                self.children.setdefault(key, r.info.run_id)

    def _search(self, filter_string: str) -> list:
        """Every run matching the filter (all pages: a sweep may have more children than a page holds)."""
        out, token = [], None
        while True:
            page = self.client.search_runs([self.exp_id], filter_string=filter_string, page_token=token,
                                           order_by=["attributes.start_time ASC"])
            out.extend(page)
            token = page.token
            if not token:
                return out

    def child(self, key: str, name: str, tags: dict | None = None, params: dict | None = None) -> str:
        """The child run with this key: the existing one, or a new one with these tags and parameters."""
        if key not in self.children:
            self.children[key] = self.client.create_run(
                self.exp_id,
                run_name=name,
                tags={**self.tags, **(tags or {}), "mlflow.parentRunId": self.parent, "avbench.key": key,
                      "avbench.sweep": self.sweep},
            ).info.run_id
            if params:  # parameters are immutable: logged once, when the run is made
                self.log(self.children[key], params=params)
        return self.children[key]

    def log(self, run_id: str, metrics: dict | None = None, params: dict | None = None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
        )

    def set_tags(self, run_id: str, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def set_best(self, params: dict, value: float, trial: str | None = None, config_hash: str | None = None) -> None:
        """The sweep's best configuration so far, as tags of the parent run (mutable: it may change)."""
        from mlflow.entities import Metric, RunTag

        tags = {f"avbench.best.{k}": v for k, v in params.items()}
        if trial:
            tags["avbench.best_trial"] = trial
        if config_hash:
            tags["avbench.best_config_hash"] = config_hash
        self.client.log_batch(
            self.parent,
            metrics=[Metric(f"best_{OBJECTIVE}", float(value), int(time.time() * 1000), 0)],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def close_lost_trials(self, trial_ids: set[str]) -> list[str]:
        """Mark KILLED the trial runs of trials the search no longer knows: a driver killed right after a
        trial started, before Ray Tune saved that trial, leaves its run open, and the resumed search runs
        a new trial instead. Returns their run ids."""
        lost = []
        for key, run_id in self.children.items():
            if key.startswith("final-") or key in trial_ids:
                continue
            run = self.client.get_run(run_id)
            if run.data.tags.get("avbench.kind") == "trial" and run.info.status == "RUNNING":
                self.client.set_tag(run_id, "avbench.lost", "the driver was killed before Ray Tune saved this trial")
                self.end(run_id, "KILLED")
                lost.append(run_id)
        return lost


def _params(trial) -> dict:
    return {k: v for k, v in trial.config.items() if k != "avbench"}


# The driver's tracker and live view of each running sweep. Ray Tune pickles the run config,
# callbacks included, with the experiment and restores them on resume: the callback keeps
# only the sweep's name and finds this process's tracker and view here.
_ACTIVE: dict[str, tuple] = {}


def activate(sweep: str, tracker: Tracker, view) -> None:
    _ACTIVE[sweep] = (tracker, view)


def deactivate(sweep: str) -> None:
    _ACTIVE.pop(sweep, None)


class SweepCallback(tune.Callback):
    """Trial child runs and their per-epoch metrics, the best so far on the parent, the live view."""

    def __init__(self, sweep: str):
        self.sweep = sweep
        self.logged_best: tuple | None = None  # (trial id, value) last written to the parent

    def __getstate__(self):  # a restored experiment brings back the name only
        return {"sweep": self.sweep}

    def __setstate__(self, state):
        self.sweep, self.logged_best = state["sweep"], None

    def _active(self):
        return _ACTIVE[self.sweep]

    def _child(self, trial) -> str:
        tracker, _ = self._active()
        return tracker.child(trial.trial_id, f"trial {trial.trial_id}",
                             {"avbench.kind": "trial", "ray.trial_id": trial.trial_id}, params=_params(trial))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._child(trial)
        self._active()[1].update(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tracker, view = self._active()
        metrics = {k: v for k, v in result.items() if k in TRIAL_METRICS or k.startswith("val_hm_seed")}
        tracker.log(self._child(trial), metrics=metrics, step=int(result.get("epoch", 0)))
        # the best over every trial (restored ones included), written when it changes
        best = None
        for t in trials:
            last = result if t is trial else (t.last_result or {})
            if OBJECTIVE in last and (best is None or float(last[OBJECTIVE]) > best[1]):
                best = (t, float(last[OBJECTIVE]))
        if best is not None and (best[0].trial_id, best[1]) != self.logged_best:
            tracker.set_best(_params(best[0]), best[1], trial=best[0].trial_id)
            self.logged_best = (best[0].trial_id, best[1])
        view.update(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._active()[0].end(self._child(trial), "FINISHED")
        self._active()[1].update(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._active()[0].end(self._child(trial), "FAILED")
        self._active()[1].update(trials)
