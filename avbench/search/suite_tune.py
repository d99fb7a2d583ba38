"""One Ray Tune experiment for every sweep of a suite: trials and finals share the same workers.

A sweep on its own is one Ray Tune experiment (``search.sweep``). A suite of dozens of
sweeps run as dozens of experiments pays, per sweep, a trial actor process (Ray worker
start, torch import, data loading) and a Tune controller in the driver; at the demo's
budgets that was a sixth of the suite's time. Here the suite is one experiment
(``tune.Tuner``, ``reuse_actors``), so a handful of warm actors run every trial and
every final of every sweep. Each sweep keeps what makes it a sweep:

- ``SuiteSearcher`` (a Ray Tune ``Searcher``) holds one Optuna TPE per sweep (Ray
  Tune's ``OptunaSearch``, its study in the sweep's own storage, seeded as a lone
  sweep's) and hands out trials over the sweeps, at most ``max_concurrent`` of one
  sweep at once: first one trial of every sweep, then the sweep with the most work
  left (its trials' training time so far times what remains), so the slowest sweep
  does not end the suite alone. When a sweep's
  trials have ended, its best configuration's finals (seeds no trial used) become
  trials of the same experiment, run before further search trials so finished work
  reaches the store early; each final is logged and stored by the driver when it ends.
- ``SuiteScheduler`` routes each sweep's trials to that sweep's own ASHA (rungs over
  epochs, as a lone sweep's); finals are never stopped.
- ``SuiteCallback`` logs each sweep's trials to that sweep's MLflow parent run
  (``tracking.SweepCallback``), as a lone sweep does.

Resume. A sweep's Optuna study is the record of its search: trials it holds as
finished (complete, stopped early or failed) count towards the sweep's trials and its
best finished trial is the sweep's best; trials that were running when the suite was
killed are run again. Finals already in the store are not rerun
(``PreparedSweep.finals_for``). So rerunning a suite starts a new experiment that
continues every unfinished sweep where its study and the store left it; nothing
depends on the interrupted experiment's saved state (trials restart from their first
epoch either way: a trial keeps no checkpoint). After an interruption, the TPE's
sampler starts again from its seed, so the configurations proposed after a resume
may differ from those of an uninterrupted run; the study's history is kept whole.
"""

from __future__ import annotations

import json
import time

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from avbench.search.trial import OBJECTIVE, peak_rss_mb, run_final, run_trial

# The running driver's suites: Ray Tune pickles the searcher, scheduler and callbacks with the
# experiment, so they hold only the suite's name and find the driver's objects here.
_RUNS: dict[str, "SuiteRun"] = {}


def run_suite_trial(config: dict) -> None:
    """A trial of the suite's experiment: a sweep's search trial (stage 1, reported per epoch) or a final
    (the whole protocol on one final seed, reported once as JSON)."""
    ctx = config["avbench"]
    if "final_seed" not in ctx:
        return run_trial(config)
    params = {k: v for k, v in config.items() if k != "avbench"}
    res = run_final(ctx, params, int(ctx["final_seed"]))
    tune.report({"final": json.dumps(res, default=str), "train_seconds": res["seconds"], "peak_rss_mb": peak_rss_mb()})


def _sweep_of(trial) -> tuple[str | None, bool]:
    """(sweep name, is a final) of a Tune trial."""
    ctx = trial.config.get("avbench") or {}
    return ctx.get("sweep"), "final_seed" in ctx


class SuiteRun:
    """What the driver knows of a running suite: its prepared sweeps (``PreparedSweep``) in order, the
    progress view's states, hooks for a sweep that ends."""

    def __init__(self, suite: str, preps: dict, states: dict, slots: int, nodes: list):
        self.suite, self.preps, self.states, self.slots, self.nodes = suite, preps, states, slots, nodes
        self.order = list(preps)
        self.experiment = "<home>/sweeps/<suite>.suite"  # the Ray Tune experiment's folder, set when it starts
        self.worker_peak_rss_mb = 0.0  # the largest peak RSS a worker reported (workers are reused)

    def done(self, name: str, summary: dict) -> None:
        st = self.states[name]
        st.summary, st.phase, st.t1 = summary, "done", time.time()

    def failed(self, name: str, error: str) -> None:
        st = self.states[name]
        st.phase, st.error, st.t1 = "failed", error, time.time()
        self.preps[name].fail()


class SuiteSearcher(Searcher):
    """Every sweep's Optuna TPE behind one Ray Tune searcher; then each sweep's finals (see the module)."""

    def __init__(self, suite: str):
        super().__init__()  # no experiment-wide metric: finals report none (each sweep's TPE has its own)
        self.suite = suite
        self.sweeps: dict[str, dict] = {}  # sweep -> its progress
        self.trials: dict[str, tuple] = {}  # trial id -> (sweep, final seed or None, params)

    # ---- each sweep's progress, from its study and the store when first asked for
    def _progress(self, name: str) -> dict:
        p = self.sweeps.get(name)
        if p is not None:
            return p
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from avbench.search.resume import optuna_storage
        from avbench.search.sweep_setup import tune_space

        prep = _RUNS[self.suite].preps[name]
        storage = optuna_storage(prep.spec.storage, prep.sweeps_dir / f"{name}.optuna.journal")
        ended = []
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
            ended = [t for t in study.trials if t.state in states]
        except KeyError:  # no study yet
            pass
        done = [t for t in ended if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
        best = max(done, key=lambda t: t.value, default=None)  # the first of equal values, as Tune's best
        prep.resumed = bool(ended)
        p = self.sweeps[name] = {
            "phase": "search", "suggested": len(ended), "live": set(), "ended": len(ended),
            "best": None if best is None else (float(best.value), dict(best.params), None),
            "finals_todo": [], "finals_live": {}, "t_search": time.time(), "search_s": 0.0, "t_final": None,
            "nodes": set(), "busy": {}, "durations": [],  # per trial: training seconds so far; of ended trials
            "seen": {},  # per live trial: the training_iteration of its last report counted
            "optuna": OptunaSearch(space=OptunaSearch.convert_search_space(tune_space(prep.space)), metric=OBJECTIVE,
                                   mode="max", study_name=name, storage=storage, seed=prep.spec.sampler_seed),
        }
        self._search_ended(name)
        return p

    def _limit(self, name: str) -> int:
        return _RUNS[self.suite].preps[name].max_concurrent

    def _work_left(self, name: str) -> float:
        """Seconds of work the sweep still has, from its ended trials' training time (a final trains two
        stages of the search seeds' one); unknown (infinite) before one of its trials ended."""
        p, spec = self.sweeps[name], _RUNS[self.suite].preps[name].spec
        if not p["durations"]:
            return float("inf")
        trial = sum(p["durations"]) / len(p["durations"])
        return trial * (spec.trials - p["suggested"] + 2 * spec.seeds / spec.search_seeds)

    def suggest(self, trial_id: str):
        run = _RUNS[self.suite]
        progress = {n: self._progress(n) for n in run.order}
        for name in run.order:  # finals first: finished work reaches the store early
            p = progress[name]
            if p["phase"] == "finals" and p["finals_todo"]:
                seed = p["finals_todo"].pop(0)
                p["finals_live"][trial_id] = seed
                if p["t_final"] is None:
                    p["t_final"] = time.time()
                prep = run.preps[name]
                self.trials[trial_id] = (name, seed, prep.best["params"])
                return {**prep.best["params"], "avbench": {**prep.ctx, "final_seed": seed}}
        ready = [n for n in run.order if progress[n]["phase"] == "search"
                 and progress[n]["suggested"] < run.preps[n].spec.trials and len(progress[n]["live"]) < self._limit(n)]
        if ready:
            # the sweep with the most work left first (so the slowest sweep does not end the suite alone),
            # sweeps with no trial ended yet before any other (their work is not known), then the one with
            # fewest trials: a sweep's own trials follow each other whatever the order, so it changes no result
            name = max(ready, key=lambda n: (self._work_left(n), -progress[n]["suggested"]))
            p = progress[name]
            params = p["optuna"].suggest(trial_id)
            p["suggested"] += 1
            p["live"].add(trial_id)
            self.trials[trial_id] = (name, None, params)
            return {**params, "avbench": run.preps[name].ctx}
        if all(p["phase"] in ("done", "failed") for p in progress.values()):
            return Searcher.FINISHED
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        name, seed, params = self.trials.get(trial_id, (None, None, None))
        run = _RUNS[self.suite]
        run.worker_peak_rss_mb = max(run.worker_peak_rss_mb, float(result.get("peak_rss_mb") or 0.0))
        if name is None or seed is not None:
            return
        self.sweeps[name]["optuna"].on_trial_result(trial_id, result)
        self._account(name, trial_id, result, params)

    def _account(self, name: str, trial_id: str, result: dict, params: dict) -> None:
        """A search trial's report towards its sweep: training seconds, nodes, best value so far. Each report
        once: Ray Tune passes a report whose scheduler decision is STOP (ASHA at a rung or at the last
        epoch) only to ``on_trial_complete`` (tune_controller ``_process_trial_result``), which counts it here."""
        p, prep = self.sweeps[name], _RUNS[self.suite].preps[name]
        it = result.get("training_iteration")
        if it is not None and p["seen"].get(trial_id) == it:
            return
        p["seen"][trial_id] = it
        prep.busy += float(result.get("train_seconds") or 0.0)
        p["busy"][trial_id] = p["busy"].get(trial_id, 0.0) + float(result.get("train_seconds") or 0.0)
        if result.get("node_id"):
            p["nodes"].add(result["node_id"])
        value = result.get(OBJECTIVE)
        if value is not None and (p["best"] is None or float(value) > p["best"][0]):
            p["best"] = (float(value), dict(params), trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        name, seed, params = self.trials.get(trial_id, (None, None, None))
        if name is None:
            return
        p, run = self.sweeps[name], _RUNS[self.suite]
        if seed is None:
            if result and not error:
                self._account(name, trial_id, result, params)  # its last report, when the scheduler stopped it
            p["seen"].pop(trial_id, None)
            p["optuna"].on_trial_complete(trial_id, result, error)
            p["live"].discard(trial_id)
            if trial_id in p["busy"]:
                p["durations"].append(p["busy"].pop(trial_id))
            p["ended"] += 1
            self._search_ended(name)
            return
        p["finals_live"].pop(trial_id, None)
        if p["phase"] != "finals":
            return
        if error or not result or "final" not in result:
            p["phase"] = "failed"
            run.failed(name, f"sweep {name}: the final on seed {seed} failed (see {run.experiment})")
            return
        try:
            rec = run.preps[name].record_final(seed, json.loads(result["final"]))
        except Exception as e:  # the store or MLflow refused it: this sweep fails, the others go on
            p["phase"] = "failed"
            run.failed(name, f"sweep {name}: storing the final on seed {seed} failed ({e})")
            return
        if rec is not None:
            run.states[name].finals += 1
        self._maybe_done(name)

    # ---- a sweep's phases
    def _search_ended(self, name: str) -> None:
        """When every trial of the sweep has ended: its finals (or its failure, if no trial finished)."""
        p, run = self.sweeps[name], _RUNS[self.suite]
        prep = run.preps[name]
        if p["phase"] != "search" or p["ended"] < prep.spec.trials or p["live"]:
            return
        p["search_s"] = time.time() - p["t_search"]
        if p["best"] is None:
            p["phase"] = "failed"
            run.failed(name, f"sweep {name}: no trial finished (see {run.experiment})")
            return
        value, params, trial = p["best"]
        try:
            p["finals_todo"] = prep.finals_for(params, value, trial)
        except Exception as e:
            p["phase"] = "failed"
            run.failed(name, f"sweep {name}: {e}")
            return
        p["phase"] = "finals"
        run.states[name].phase = "finals"
        self._maybe_done(name)

    def _maybe_done(self, name: str) -> None:
        p, run = self.sweeps[name], _RUNS[self.suite]
        if p["phase"] != "finals" or p["finals_todo"] or p["finals_live"]:
            return
        p["phase"] = "done"
        prep = run.preps[name]
        known = {t for t, (n, s, _) in self.trials.items() if n == name and s is None}
        prep.tracker.close_lost_trials(known)
        final_s = time.time() - p["t_final"] if p["t_final"] else 0.0
        run.done(name, prep.finish(p["ended"], p["search_s"], final_s, run.nodes, sorted(p["nodes"]), run.slots))

    # ---- Ray Tune saves the searcher with the experiment; a suite resumes from the studies instead
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def __getstate__(self):
        return {"suite": self.suite}

    def __setstate__(self, state):
        self.__init__(state["suite"])


class SuiteScheduler(FIFOScheduler):
    """Each sweep's trials under that sweep's own ASHA; finals run to their end."""

    def __init__(self):
        super().__init__()
        self.subs: dict[str, TrialScheduler] = {}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def _sub(self, trial):
        name, final = _sweep_of(trial)
        if name is None or final:
            return None
        if name not in self.subs:
            from avbench.search.sweep import asha

            sub = asha(int(trial.config["avbench"]["epochs"]))
            sub.set_search_properties(OBJECTIVE, "max")
            self.subs[name] = sub
        return self.subs[name]

    def on_trial_add(self, tune_controller, trial):
        sub = self._sub(trial)
        if sub is not None:
            sub.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        sub = self._sub(trial)
        if sub is not None:
            sub.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        sub = self._sub(trial)
        return TrialScheduler.CONTINUE if sub is None else sub.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        sub = self._sub(trial)
        if sub is not None:
            sub.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        sub = self._sub(trial)
        if sub is not None:
            sub.on_trial_remove(tune_controller, trial)

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


class SuiteCallback(tune.Callback):
    """Each sweep's search trials to its MLflow parent and progress view (``tracking.SweepCallback``)."""

    def __init__(self, suite: str):
        self.suite = suite
        self.subs: dict = {}

    def __getstate__(self):
        return {"suite": self.suite}

    def __setstate__(self, state):
        self.__init__(state["suite"])

    def _route(self, trials, trial):
        from avbench.search.tracking import SweepCallback

        name, final = _sweep_of(trial)
        if name is None or final:
            return None, None
        sub = self.subs.setdefault(name, SweepCallback(name))
        return sub, [t for t in trials if _sweep_of(t) == (name, False)]

    def on_trial_start(self, iteration, trials, trial, **info):
        sub, mine = self._route(trials, trial)
        if sub is not None:
            sub.on_trial_start(iteration, mine, trial, **info)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        sub, mine = self._route(trials, trial)
        if sub is not None:
            sub.on_trial_result(iteration, mine, trial, result, **info)

    def on_trial_complete(self, iteration, trials, trial, **info):
        sub, mine = self._route(trials, trial)
        if sub is not None:
            sub.on_trial_complete(iteration, mine, trial, **info)

    def on_trial_error(self, iteration, trials, trial, **info):
        sub, mine = self._route(trials, trial)
        if sub is not None:
            sub.on_trial_error(iteration, mine, trial, **info)


def tune_suite(run: SuiteRun, storage_path: str, experiment: str, resources: dict) -> None:
    """Run every sweep of ``run`` in one Ray Tune experiment (``<storage_path>/<experiment>``) to its end."""
    from avbench.search.sweep import TUNE_CONFIG

    _RUNS[run.suite] = run
    run.experiment = f"{storage_path}/{experiment}"
    try:
        tuner = tune.Tuner(
            tune.with_resources(run_suite_trial, resources),
            tune_config=tune.TuneConfig(
                search_alg=SuiteSearcher(run.suite),
                scheduler=SuiteScheduler(),
                num_samples=-1,  # until the searcher says every sweep has ended
                **TUNE_CONFIG,  # reused actors: the same warm workers run every sweep's trials and finals
            ),
            run_config=tune.RunConfig(
                name=experiment,
                storage_path=storage_path,
                verbose=0,
                callbacks=[SuiteCallback(run.suite)],
                failure_config=tune.FailureConfig(max_failures=2),
            ),
        )
        tuner.fit()
    finally:
        _RUNS.pop(run.suite, None)
