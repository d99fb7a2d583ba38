"""The two-stage protocol (FIELD_NOTES §3), with the test split out of reach.

Stage 1 trains on ``stage_1_train`` and evaluates on ``stage_1_val_seen ∪
stage_1_val_unseen`` after every epoch; it picks the epoch with the best
validation HM (after calibrated stacking) and that epoch's β. Stage 2 retrains
from scratch on ``stage_2_train`` (= stage-1 train ∪ val) for as many epochs as
the preset says, following the learning-rate schedule stage 1 chose (the
platform's ``stage2_lr=replay``) or, as the public codes, stepping
ReduceLROnPlateau on the validation HM of each epoch (``val-plateau``, every
reference protocol; see :mod:`avbench.protocol.presets`).
Only then are the test splits read, once, and scored with the stage-1 β.

``protocol`` is a preset name (the platform mode: one protocol for every method)
or ``reference`` (the method's own code's protocol: its preset, β rule, selection
rule, stage-2 learning-rate rule and settings; see :func:`avbench.protocol.presets.resolve_protocol`). A result
records the resolved preset, the mode and the options.

Stage 1 and all selection receive a :class:`SplitAccess` that refuses the test
splits, so no choice can depend on them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import torch

from avbench.data.benchmark import TEST_SPLITS, Benchmark, Split
from avbench.errors import ConfigError, DataError, LeakError
from avbench.methods import get_method
from avbench.methods.base import Dims
from avbench.protocol.config import resolve_config
from avbench.protocol.metrics import beta_grid, combine_betas
from avbench.protocol.presets import (
    PLATFORM_OPTIONS,
    PROTOCOL_OPTIONS,
    SELECTIONS,
    get_preset,
    resolve_protocol,
)
from avbench.protocol.result import RunResult
from avbench.protocol.feed import default_budget, fmt_bytes, parse_bytes
from avbench.protocol.machine import hardware, make_deterministic, pick_device, torch_settings_restored
from avbench.protocol.trainer import EpochRecord, EvalSet, TrainSet, evaluate, train, train_epochs


class SplitAccess:
    """A view of a benchmark that hands out only the allowed splits."""

    def __init__(self, benchmark: Benchmark, allowed: tuple[str, ...], phase: str, averaged: bool = False):
        self._b, self._allowed, self._phase, self._averaged = benchmark, allowed, phase, averaged

    def split(self, name: str, lazy: bool = False) -> Split:
        """The split; ``lazy``: feature values stay in the file (an averaged view is computed in chunks)."""
        if name not in self._allowed:
            raise LeakError(f"{self._phase} asked for split {name!r}; it may read only {', '.join(self._allowed)}")
        s = self._b.split(name, lazy=lazy or self._averaged)
        return s.averaged() if self._averaged else s

    def nbytes(self, names: tuple[str, ...]) -> int | None:
        """Bytes the splits' features take in memory as the run uses them (None: unknown)."""
        if self._averaged:  # the time average: one float32 vector per video and modality
            return sum(self._b.split_sizes[n] for n in names) * (self._b.audio_dim + self._b.video_dim) * 4
        try:
            return sum(self._b.nbytes(n) for n in names)
        except DataError:  # a benchmark that does not record its splits' sizes
            return None


def select(history: list[EpochRecord], rule: str = "first-best") -> EpochRecord:
    """The stage-1 epoch with the best validation HM.

    ``first-best`` (the platform's rule): the earliest epoch wins ties, as the codes'
    strict ``>``. ``zero-is-unset``: as the codes' ``check_best_score`` (AVCA-GZSL
    src/utils.py L111-118, TCAF-GZSL L174-182, ClipClap-GZSL L208-216), whose
    ``if not best_score`` reads a best HM of 0 as "no best yet", so while the best HM
    is 0 every later epoch replaces it; otherwise the same strict ``>``.
    """
    if rule not in SELECTIONS:
        raise ConfigError(f"selection rule {rule!r}: expected one of {', '.join(SELECTIONS)}")
    best = history[0]
    for rec in history[1:]:
        if rec.val["HM"] > best.val["HM"] or (rule == "zero-is-unset" and best.val["HM"] == 0):
            best = rec
    return best


@dataclass
class _Plan:
    """What a run resolved before training: settings, method class, device, embeddings, β grid."""

    preset: object
    config: dict
    default: dict
    cls: type
    dev: torch.device
    emb: object
    dims: Dims
    tag: dict
    betas: torch.Tensor
    common: dict
    epochs: int
    mode: str = "platform"
    options: dict = field(default_factory=dict)  # the protocol options as resolved (recorded in the result)
    rules: dict = field(default_factory=lambda: dict(PLATFORM_OPTIONS))  # beta_rule, selection, stage2_lr
    budget: int = 0  # bytes of features a stage may keep resident (see protocol.feed)
    on_data: Callable | None = None
    data_access: dict = field(default_factory=dict)  # stage -> "resident" | "streamed"
    seen1: object = None  # stage 1's training classes (global ids), set by stage 1
    _need: int | None = None

    def residency(self, access: "SplitAccess", names: tuple[str, ...], stage: str) -> bool:
        """Keep the stage's splits resident when they fit the budget; else stream them."""
        need = access.nbytes(names)
        resident = need is None or need <= self.budget
        self.data_access[stage] = "resident" if resident else "streamed"
        self._need = need
        return resident

    def announce(self, stage: str, train: TrainSet | None = None) -> None:
        """Check that a streamed training stage holds one batch (and the one read ahead) within the
        budget, then show the stage's choice (``on_data``)."""
        resident = self.data_access[stage] == "resident"
        if train is not None and not resident:
            B = int(self.common["batch_size"])
            need = 2 * 2 * (train.audio.batch_bytes(B) + train.video.batch_bytes(B))  # pos + neg, current + next
            if need > self.budget:
                raise ConfigError(
                    f"memory budget {fmt_bytes(self.budget)}: too small for one training batch of {B} pairs "
                    f"(up to {fmt_bytes(need)} with the batch read ahead); raise --memory-budget or lower batch_size"
                )
        if self.on_data is not None:
            self.on_data(stage, resident, self._need, self.budget)


def _plan(benchmark, method, protocol, seed, overrides, text_order, device, on_batch, memory_budget=None,
          on_data=None) -> _Plan:
    preset_name, options, mode = resolve_protocol(method, protocol, benchmark.settings_dataset, benchmark.features,
                                                  benchmark=benchmark)
    preset = get_preset(preset_name)
    rules = {**PLATFORM_OPTIONS, **{k: v for k, v in options.items() if k in PROTOCOL_OPTIONS}}
    # a benchmark may suggest a budget (the synthetic one is small); the user's settings win
    config = resolve_config(method, benchmark.settings_dataset, benchmark.features, {**benchmark.budget, **(overrides or {})},
                            protocol_options=options)
    default = resolve_config(method, benchmark.settings_dataset, benchmark.features, dict(benchmark.budget),
                             protocol_options=options)
    cls = get_method(method)
    if cls.inputs == "temporal" and not benchmark.temporal:
        raise ConfigError(
            f"method {cls.name} needs per-second (temporal) features; dataset {benchmark.name} has averaged ones "
            f"(import with --features temporal-main or use synthetic-temporal)"
        )
    avg = benchmark.temporal and cls.inputs != "temporal"  # averaged-feature methods see the time average
    common = dict(
        batches_per_epoch=int(config["batches_per_epoch"]),
        batch_size=int(config["batch_size"]),
        seed=seed,
        on_batch=on_batch,
        eval_batch_size=int(config["eval_batch_size"]),
        negatives=str(config["negatives"]),
    )
    dev = pick_device(device)
    make_deterministic(int(config["threads"]), dev)
    return _Plan(
        preset=preset,
        config=config,
        default=default,
        cls=cls,
        dev=dev,
        emb=benchmark.embeddings(text_order),
        dims=Dims(audio=benchmark.audio_dim, video=benchmark.video_dim, text=benchmark.text_dim),
        tag={"averaged": avg},
        betas=beta_grid(preset.beta_stop, preset.beta_num),
        common=common,
        epochs=int(config["epochs"]),
        mode=mode,
        options=dict(options),
        rules=rules,
        budget=default_budget(dev) if memory_budget in (None, "", "auto") else parse_bytes(memory_budget),
        on_data=on_data,
    )


VAL_SPLITS = ("stage_1_val_seen", "stage_1_val_unseen")


def _validation(access: "SplitAccess", plan: _Plan, resident: bool) -> EvalSet:
    """The validation videos (val seen ∪ val unseen) scored against stage 1's seen classes and the val
    unseen ones, as in stage 1 (stage 2 uses it with ``stage2_lr=val-plateau``)."""
    return EvalSet.build(  # handed over lazily: the build reads both splits into one array when resident
        access.split(VAL_SPLITS[0], True), access.split(VAL_SPLITS[1], True), plan.seen1, plan.emb, plan.dev,
        resident,
    )


def _stage1(benchmark: Benchmark, plan: _Plan, seed: int) -> Iterator[EpochRecord]:
    """Stage 1 as a generator of epoch records (train, validate each epoch).

    The global torch RNG (dropout, sampling inside methods) is saved at every yield and
    restored on resumption, so several runs advanced in turn give exactly the numbers
    each gives alone.
    """
    stage1_data = SplitAccess(
        benchmark, ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen"), "stage 1", **plan.tag
    )
    resident = plan.residency(stage1_data, ("stage_1_train", *VAL_SPLITS), "stage 1")
    lazy = not resident
    train1 = TrainSet.build(stage1_data.split("stage_1_train", lazy), plan.emb, plan.dev, resident)
    plan.announce("stage 1", train1)
    plan.seen1 = train1.classes
    val = _validation(stage1_data, plan, resident)
    torch.manual_seed(seed)
    model = plan.cls(plan.dims, plan.config).to(plan.dev)
    cuda = plan.dev.type == "cuda"
    for rec in train_epochs(
        model,
        train1,
        epochs=plan.epochs,
        val=val,
        betas=plan.betas,
        lr_patience=int(plan.config["lr_patience"]),
        lr_factor=float(plan.config["lr_factor"]),
        beta_rule=plan.rules["beta_rule"],
        **plan.common,
    ):
        state = (torch.get_rng_state(), torch.cuda.get_rng_state(plan.dev) if cuda else None)
        yield rec
        torch.set_rng_state(state[0])
        if cuda:
            torch.cuda.set_rng_state(state[1], plan.dev)


def stage1_epochs(
    benchmark: Benchmark,
    method: str,
    *,
    protocol: str = "avca2022",
    seed: int = 0,
    overrides: dict | None = None,
    text_order: str = "by-name",
    device: str | None = "cpu",
    memory_budget: int | str | None = None,
) -> Iterator[EpochRecord]:
    """Stage 1 alone, one record (with validation metrics) per epoch, for searches.

    Searches over several seeds advance one generator per seed in turn and report the
    per-epoch mean; each seed's records equal those of ``run_protocol`` with that seed.
    The test splits are out of reach here as in ``run_protocol``. ``protocol`` may be
    ``reference`` (the method's code's protocol) as there. Unlike ``run_protocol`` it
    leaves torch's thread count and deterministic mode as the run set them: generators
    advanced in turn cannot each restore what the one before set.
    """
    plan = _plan(benchmark, method, protocol, seed, overrides, text_order, device, None, memory_budget)
    yield from _stage1(benchmark, plan, seed)


def run_protocol(
    benchmark: Benchmark,
    method: str,
    *,
    protocol: str = "avca2022",
    seed: int = 0,
    overrides: dict | None = None,
    text_order: str = "by-name",
    device: str | None = "cpu",
    on_epoch: Callable[[str, EpochRecord, int], None] | None = None,
    on_batch: Callable[[], None] | None = None,
    on_stage: Callable[[str, int, int], None] | None = None,
    stage1_only: bool = False,
    memory_budget: int | str | None = None,
    on_data: Callable[[str, bool, int | None, int], None] | None = None,
) -> RunResult:
    """Run stage 1, selection, stage 2 and the single test evaluation.

    Callbacks (for progress displays): ``on_stage(name, epochs, batches_per_epoch)``
    when a stage starts, ``on_epoch(name, record, epochs)`` after each epoch,
    ``on_batch()`` after each optimiser step and ``on_data(stage, resident, bytes, budget)``
    when a stage's data is kept resident or streamed (``memory_budget``, see
    :mod:`avbench.protocol.feed`; the choice never changes a result).

    The run sets torch's thread count (setting ``threads``) and deterministic mode for
    itself and gives back the caller's on return.
    """
    with torch_settings_restored():
        return _run(benchmark, method, protocol, seed, overrides, text_order, device, on_epoch, on_batch, on_stage,
                    stage1_only, memory_budget, on_data)


def _run(benchmark, method, protocol, seed, overrides, text_order, device, on_epoch, on_batch, on_stage, stage1_only,
         memory_budget, on_data) -> RunResult:
    t0 = time.perf_counter()
    plan = _plan(benchmark, method, protocol, seed, overrides, text_order, device, on_batch, memory_budget, on_data)
    preset, config, default, cls, dev = plan.preset, plan.config, plan.default, plan.cls, plan.dev
    emb, dims, tag, betas, common, epochs = plan.emb, plan.dims, plan.tag, plan.betas, plan.common, plan.epochs

    # ---- stage 1: train, validate each epoch, choose epoch and β ------------
    if on_stage:
        on_stage("stage 1", epochs, common["batches_per_epoch"])
    hist1 = []
    for rec in _stage1(benchmark, plan, seed):
        hist1.append(rec)
        if on_epoch:
            on_epoch("stage 1", rec, epochs)
    best = select(hist1, plan.rules["selection"])
    # with the "mean" β rule the record holds every output's β (val["betas"]); else only the predictor's
    beta = combine_betas(plan.rules["beta_rule"], best.val.get("betas") or {cls.predicts: best.val["beta"]},
                         cls.predicts)
    stage2_epochs = preset.stage2_epochs(best.epoch)
    lr_schedule = [r.lr for r in hist1]
    lr_schedule += [lr_schedule[-1]] * (stage2_epochs - len(lr_schedule))

    result = RunResult(
        method=cls.name,
        dataset=benchmark.dataset,
        features=benchmark.features,
        protocol=preset.name,
        seed=seed,
        S=float("nan"),
        U=float("nan"),
        HM=float("nan"),
        ZSL=float("nan"),
        beta=beta,
        best_epoch=best.epoch,
        stage2_epochs=stage2_epochs,
        text_order=text_order,
        data_fingerprint=benchmark.fingerprint,
        device=str(dev),
        seconds=0.0,
        config=config,
        stage1=[asdict(r) for r in hist1],
        val=dict(best.val),
        default_budget={k: int(default[k]) for k in ("epochs", "batches_per_epoch", "batch_size")},
        threads=int(torch.get_num_threads()) if dev.type == "cpu" else 0,
        hardware=hardware(dev),
        torch_version=torch.__version__,
        protocol_mode=plan.mode,
        protocol_options=dict(plan.options),
    )
    if stage1_only:
        result.data_access = dict(plan.data_access)
        result.seconds = time.perf_counter() - t0
        return result

    # ---- stage 2: retrain on train ∪ val; the stage-1 LR schedule, or (the codes') ----
    # ---- ReduceLROnPlateau on validation HM, the validation videos now training data ----
    plateau = plan.rules["stage2_lr"] == "val-plateau"
    names = ("stage_2_train", *VAL_SPLITS) if plateau else ("stage_2_train",)
    stage2_data = SplitAccess(benchmark, names, "stage 2 training", **tag)
    resident = plan.residency(stage2_data, ("stage_2_train",), "stage 2")
    train2 = TrainSet.build(stage2_data.split("stage_2_train", not resident), emb, dev, resident)
    plan.announce("stage 2", train2)
    schedule = dict(lr_schedule=lr_schedule)
    if plateau:  # the validation videos are resident beside the training set only when both fit the budget
        need = stage2_data.nbytes(names)
        val_resident = resident and (need is None or need <= plan.budget)
        plan.data_access["stage 2 validation"] = "resident" if val_resident else "streamed"
        schedule = dict(val=_validation(stage2_data, plan, val_resident), betas=betas,
                        lr_patience=int(config["lr_patience"]), lr_factor=float(config["lr_factor"]),
                        beta_rule=plan.rules["beta_rule"])
    torch.manual_seed(seed)
    model = cls(dims, config).to(dev)
    if on_stage:
        on_stage("stage 2", stage2_epochs, common["batches_per_epoch"])
    hist2 = train(
        model,
        train2,
        epochs=stage2_epochs,
        on_epoch=(lambda r: on_epoch("stage 2", r, stage2_epochs)) if on_epoch else None,
        **schedule,
        **common,
    )
    seen2 = train2.classes
    del train2, schedule

    # ---- test: read once, score with the stage-1 β ----------------------------
    test_data = SplitAccess(benchmark, TEST_SPLITS, "final evaluation", **tag)
    resident = plan.residency(test_data, TEST_SPLITS, "test")
    plan.announce("test")
    test = EvalSet.build(test_data.split("stage_2_test_seen", True),  # read once by the build (see stage 1)
                         test_data.split("stage_2_test_unseen", True), seen2, emb, dev, resident)
    # one scoring over the whole grid (for plots) and the test β: a grid value is its own column;
    # another (the mean of several outputs' β's) is scored as an extra column
    on_grid = (betas == beta).nonzero()
    scored = betas if len(on_grid) else torch.cat((betas, torch.tensor([beta], dtype=betas.dtype)))
    curve = evaluate(model, test, scored, chunk=int(config["eval_batch_size"]))
    final = curve.at(int(on_grid[0]) if len(on_grid) else len(betas))
    result.S, result.U, result.HM, result.ZSL = final["S"], final["U"], final["HM"], final["ZSL"]
    result.stage2 = [asdict(r) for r in hist2]
    n = len(betas)
    result.beta_curve = {
        "beta": [float(b) for b in curve.betas[:n]],
        "S": [float(x) for x in curve.S[:n]],
        "U": [float(x) for x in curve.U[:n]],
        "HM": [float(x) for x in curve.HM[:n]],
    }
    result.data_access = dict(plan.data_access)
    result.seconds = time.perf_counter() - t0
    return result


__all__ = ["SplitAccess", "run_protocol", "select", "stage1_epochs"]
