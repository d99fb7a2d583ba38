"""The suite's one experiment, driven by hand (no Ray): which trials its searcher hands out and when.

Every sweep keeps its own TPE and trial budget, at most ``max_concurrent`` of its trials run at
once, sweeps take turns, a sweep's finals come only after all its trials ended and use seeds no
trial used, and a rerun continues from the sweeps' studies and the store."""

import pytest

pytest.importorskip("ray")
pytest.importorskip("optuna")

from ray.tune.search import Searcher  # noqa: E402

from avbench.protocol.config import resolve_config  # noqa: E402
from avbench.protocol.result import RunResult  # noqa: E402
from avbench.search.suite_tune import SuiteRun, SuiteSearcher, _RUNS  # noqa: E402
from avbench.search.suite_view import SweepState  # noqa: E402
from avbench.search.sweep_setup import PreparedSweep, SweepSpec  # noqa: E402
from avbench.search.trial import OBJECTIVE  # noqa: E402


class _Planned:
    def __init__(self, name):
        self.name, self.skip, self.spec = name, None, None


def _suite(home, trials=3):
    preps, states = {}, {}
    for m in ("avca", "ale"):
        spec = SweepSpec(method=m, dataset="synthetic", trials=trials, seeds=2, search_seeds=1, max_concurrent=1,
                         name=f"s.{m}", home=str(home), overrides={"epochs": 2})
        prep = PreparedSweep(spec, restoring=(home / "sweeps" / spec.name).is_dir())
        prep.start(prep.open_tracker(), max_conc=1)
        preps[spec.name], states[spec.name] = prep, SweepState(_Planned(spec.name))
    run = SuiteRun("s", preps, states, slots=2, nodes=[])
    _RUNS["s"] = run
    return run, SuiteSearcher("s")


def _final(prep, seed, params):
    config = resolve_config(prep.method, prep.settings_dataset, prep.features, {**prep.base, **params},
                            protocol_options=prep.options)
    res = RunResult(method=prep.method, dataset=prep.bench_dataset, features=prep.features, protocol=prep.preset,
                    seed=seed, S=0.5, U=0.25, HM=1 / 3, ZSL=0.3, beta=0.2, best_epoch=1, stage2_epochs=1,
                    text_order="by-name", data_fingerprint=prep.fingerprint, device="cpu", seconds=1.0,
                    config=config, threads=1)
    return {"final": __import__("json").dumps(res.to_dict())}


def _drive(run, searcher, stop_after=None, reports=None):
    """Ask for trials until the searcher is finished, ending each at once (search trials in the order they were
    handed out, with values 1, 2, 3, ...; ``reports(n)`` gives the n-th one's reports instead); returns the
    (sweep, final seed) of each trial handed out.

    As Ray Tune does (tune_controller ``_process_trial_result``): every report but the last goes to
    ``on_trial_result``; the last, on which the trial's ASHA says STOP, only to ``on_trial_complete``."""
    handed, live, n = [], [], 0
    while True:
        while True:
            tid = f"t{len(handed)}"
            cfg = searcher.suggest(tid)
            if cfg in (None, Searcher.FINISHED):
                break
            ctx = cfg["avbench"]
            handed.append((ctx["sweep"], ctx.get("final_seed")))
            live.append((tid, cfg))
            per_sweep = [c["avbench"]["sweep"] for _, c in live if "final_seed" not in c["avbench"]]
            assert max(per_sweep.count(s) for s in per_sweep) <= 1 if per_sweep else True  # max_concurrent=1
        if cfg == Searcher.FINISHED or stop_after is not None and len(handed) >= stop_after:
            return handed, cfg
        assert live, "the searcher handed out nothing while nothing runs"
        tid, cfg = live.pop(0)
        ctx = cfg["avbench"]
        prep = run.preps[ctx["sweep"]]
        if "final_seed" in ctx:
            searcher.on_trial_complete(tid, _final(prep, ctx["final_seed"], prep.best["params"]))
        else:
            n += 1
            results = reports(n) if reports else [{OBJECTIVE: float(n), "training_iteration": 1, "train_seconds": 0.5}]
            for result in results[:-1]:
                searcher.on_trial_result(tid, result)
            searcher.on_trial_complete(tid, results[-1])


def test_sweeps_take_turns_and_finals_follow_each_sweeps_search(tmp_path):
    run, searcher = _suite(tmp_path)
    try:
        handed, last = _drive(run, searcher)
    finally:
        _RUNS.pop("s", None)
    assert last == Searcher.FINISHED
    assert handed[0][0] != handed[1][0]  # the two sweeps take turns
    for name in ("s.avca", "s.ale"):
        mine = [seed for sweep, seed in handed if sweep == name]
        assert mine == [None, None, None, 1, 2]  # 3 trials, then finals on seeds 1 and 2 (search seed 0)
        s = run.states[name].summary
        assert s["trials"] == 3 and [f["seed"] for f in s["finals"]] == [1, 2]
        assert run.states[name].phase == "done"
    stored = run.preps["s.ale"].store.rows(columns=["entry", "seed"])
    assert sorted((r["entry"], r["seed"]) for r in stored) == [("s.ale", 1), ("s.ale", 2), ("s.avca", 1),
                                                              ("s.avca", 2)]


def test_a_rerun_continues_from_the_studies_and_the_store(tmp_path):
    run, searcher = _suite(tmp_path)
    try:
        handed, _ = _drive(run, searcher, stop_after=3)  # interrupted: 3 trials handed out, 1 ended
    finally:
        _RUNS.pop("s", None)
    run, searcher = _suite(tmp_path)  # the rerun: a new searcher, the same studies
    try:
        again, last = _drive(run, searcher)
    finally:
        _RUNS.pop("s", None)
    assert last == Searcher.FINISHED
    ended_before = {"s.avca": 1, "s.ale": 0}  # the first trial handed out (avca's) ended before the interruption
    for name in ("s.avca", "s.ale"):
        trials = [seed for sweep, seed in again if sweep == name and seed is None]
        assert len(trials) == 3 - ended_before[name]  # trials still running at the interruption run again
        assert run.preps[name].resumed == bool(ended_before[name])
        assert run.states[name].summary["trials"] == 3


def test_a_trials_last_report_counts_towards_the_best_and_the_busy_time(tmp_path):
    """The report on which ASHA stops a trial (its last epoch) reaches the searcher only through
    on_trial_complete: the best configuration and the training seconds must count it."""
    def reports(n):  # earlier trials lead after epoch 1; the later a trial, the better its last epoch
        return [{OBJECTIVE: 50.0 - n, "training_iteration": 1, "train_seconds": 1.0},
                {OBJECTIVE: 60.0 + n, "training_iteration": 2, "train_seconds": 2.0}]

    run, searcher = _suite(tmp_path)
    try:
        handed, last = _drive(run, searcher, reports=reports)
    finally:
        _RUNS.pop("s", None)
    assert last == Searcher.FINISHED
    search = [(i, sweep) for i, (sweep, seed) in enumerate(handed) if seed is None]
    for name in ("s.avca", "s.ale"):
        s = run.states[name].summary
        # the trials were ended in the order handed out; n = that order + 1 (finals are not numbered)
        last_n = max(k + 1 for k, (_, sweep) in enumerate(search) if sweep == name)
        assert s["best_val_hm"] == 60.0 + last_n  # not the best value of an earlier epoch (50 - 1)
        assert s["busy_seconds"] == pytest.approx(3 * 3.0 + 2 * 1.0)  # 3 trials of 1 + 2 s, 2 finals of 1 s
