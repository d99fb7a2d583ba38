"""Reference protocols (issue 10): presets, β rules, selection, reference options, BatchNorm passes."""

import pytest
import torch

from avbench.data.synthetic import SyntheticSpec, synthetic_benchmark
from avbench.errors import ConfigError, DataError
from avbench.methods import available_methods, get_method
from avbench.methods.base import Batch, Dims, Method
from avbench.protocol import trainer
from avbench.protocol.config import resolve_config
from avbench.protocol.metrics import beta_grid, combine_betas, evaluate_gzsl
from avbench.protocol.presets import (
    PRESETS,
    PROTOCOL_OPTIONS,
    SELECTIONS,
    get_preset,
    reference_sources,
    resolve_protocol,
)
from avbench.protocol.run import run_protocol, select, stage1_epochs
from avbench.protocol.trainer import EpochRecord, EvalSet, validation_record

TINY_SPEC = SyntheticSpec(train_per_class=12, val_seen_per_class=4, val_unseen_per_class=10, test_seen_per_class=4,
                          test_unseen_per_class=10, audio_dim=24, video_dim=16)
TINY = {"epochs": 2, "batches_per_epoch": 4, "batch_size": 32}
NO_REFERENCE = {"mft", "ez-avgzl", "f-vaegan-d2"}  # no public code / code that selects on test
# every (dataset, feature set) a method can be run on: imported datasets and the synthetic variants
BENCHMARKS = [(ds, f) for ds in ("ucf", "activitynet", "vggsound") for f in ("main", "cls", "temporal-main",
                                                                             "temporal-cls", "clipclap")]
BENCHMARKS += [("synthetic", "main"), ("synthetic", "clipclap"), ("synthetic", "temporal-main")]


def _accepts(cls, features: str) -> bool:
    return cls.inputs != "temporal" or features.startswith("temporal-")


# ---------------------------------------------------------------- presets: stage-2 length
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_stage2_trains_the_selected_epoch_count_first_middle_last(preset, monkeypatch):
    """The best stage-1 epoch is forced to the first, a middle and the last of 5; stage 2 trains exactly that many."""
    for best in (1, 3, 5):
        hms = [0.1, 0.2, 0.3, 0.2, 0.1] if best == 3 else ([0.5, 0.1, 0.1, 0.1, 0.1] if best == 1 else
                                                            [0.1, 0.2, 0.3, 0.4, 0.5])
        seen = iter(hms)

        def fake_record(method, data, betas, chunk, beta_rule, _hms=seen):
            return {"beta": 0.0, "S": 0.5, "U": 0.5, "HM": next(_hms), "ZSL": 0.5}

        monkeypatch.setattr(trainer, "validation_record", fake_record)
        r = run_protocol(synthetic_benchmark(TINY_SPEC), "ale", protocol=preset, seed=0,
                         overrides={**TINY, "epochs": 5})
        assert r.best_epoch == best, (preset, best)
        assert r.stage2_epochs == best and len(r.stage2) == best, (preset, best, r.stage2_epochs)
        assert get_preset(preset).stage2_epochs(best) == best


def test_presets_name_their_grids_and_sources():
    assert (PRESETS["avca2022"].beta_stop, PRESETS["avca2022"].beta_num) == (3.0, 16)
    assert (PRESETS["tcaf2022"].beta_stop, PRESETS["tcaf2022"].beta_num) == (3.0, 16)  # TCAF uses AVCA's grid
    assert (PRESETS["clipclap2024"].beta_stop, PRESETS["clipclap2024"].beta_num) == (5.0, 76)
    for p in PRESETS.values():
        assert ".py" in p.source and " L" in p.source, p.name
    with pytest.raises(ConfigError, match="'nope'"):
        get_preset("nope")
    with pytest.raises(ConfigError, match="best epoch 0"):
        get_preset("avca2022").stage2_epochs(0)


# ---------------------------------------------------------------- β rules
class _Fixed(Method):
    """Returns hand-made distance matrices: row i of every output for the video whose audio[:, 0] is i."""

    predicts = "joint"

    def __init__(self, outputs: dict):
        super().__init__(Dims(1, 1, 1), {})
        self.outputs = outputs

    def named_distances(self, audio, video, text, **kw):
        rows = audio[:, 0].long()
        return {k: d[rows] for k, d in self.outputs.items()}

    def distances(self, audio, video, text, **kw):
        return self.named_distances(audio, video, text)["joint"]


def _matrix(delta: float, margin: float) -> torch.Tensor:
    """4 videos (labels 0, 1 seen; 2, 3 unseen) x 4 classes (0, 1 seen; 2, 3 unseen).

    An unseen video's nearest seen class is ``delta`` closer than its own class (it is right once
    β > delta); a seen video's own class is ``margin`` closer than its nearest unseen class (it
    stays right while β < margin). So HM is 1 exactly for β in (delta, margin).
    """
    d = torch.full((4, 4), 10.0)
    for v in (0, 1):  # seen videos
        d[v, v], d[v, 2 + v] = 1.0, 1.0 + margin
    for v in (2, 3):  # unseen videos
        d[v, v], d[v, v - 2] = 1.0, 1.0 - delta
    return d


def _evalset() -> EvalSet:
    return EvalSet(
        audio=torch.arange(4, dtype=torch.float32)[:, None], video=torch.zeros(4, 1),
        labels=torch.tensor([0, 1, 2, 3]), is_seen_video=torch.tensor([True, True, False, False]),
        search_classes=torch.tensor([0, 1, 2, 3]), seen_classes=torch.tensor([0, 1]),
        unseen_classes=torch.tensor([2, 3]), text=torch.zeros(4, 1),
    )


def test_beta_rules_disagree_on_hand_made_matrices():
    betas = beta_grid(3.0, 16)
    # best validation β per output: audio 0 (already balanced), video 1.0, joint 0.4
    val = _Fixed({"audio": _matrix(-0.1, 0.5), "video": _matrix(0.9, 2.0), "joint": _matrix(0.3, 1.5)})
    rec = validation_record(val, _evalset(), betas, 4096, "mean")
    assert rec["betas"] == pytest.approx({"audio": 0.0, "video": 1.0, "joint": 0.4})
    assert rec["beta"] == pytest.approx(0.4) and rec["HM"] == 1.0
    assert "betas" not in validation_record(val, _evalset(), betas, 4096, "predictor")  # platform: one output

    own = combine_betas("predictor", rec["betas"], "joint")
    mean = combine_betas("mean", rec["betas"], "joint")
    assert own == pytest.approx(0.4) and mean == pytest.approx((0.0 + 1.0 + 0.4) / 3, abs=1e-6)
    # on a test matrix whose unseen videos need β > 0.45, the two rules give different results
    test = _matrix(0.45, 1.2)
    hm = {}
    for name, beta in (("predictor", own), ("mean", mean)):
        e = _evalset()
        res = evaluate_gzsl(test, e.labels, e.search_classes, e.seen_classes, e.unseen_classes, e.is_seen_video,
                            torch.tensor([beta], dtype=torch.float64))
        hm[name] = float(res.HM[0])
    assert hm == {"predictor": 0.0, "mean": 1.0}


def test_mean_rule_zero_guard_and_errors():
    assert combine_betas("mean", {"audio": 0.0, "video": 0.0, "joint": 0.0}, "joint") == 1e-10
    assert combine_betas("predictor", {"joint": 0.0}, "joint") == 0.0
    # the guard matters only at exact ties of distances below float32's resolution of 1e-10: there β = 0
    # keeps the lower (seen) column and 1e-10 the unseen one; at distance 1 the two are the same β
    args = (torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1]),
            torch.tensor([True, False]))
    for tie, unseen_right in ((1e-5, [0.0, 1.0]), (1.0, [0.0, 0.0])):
        d = torch.tensor([[0.0, 5.0], [tie, tie]])  # a seen video (class 0), an unseen one (class 1) on a tie
        res = evaluate_gzsl(d, *args, torch.tensor([0.0, 1e-10], dtype=torch.float64))
        assert res.U.tolist() == unseen_right and res.S.tolist() == [1.0, 1.0], tie
    with pytest.raises(ValueError, match="'median'"):
        combine_betas("median", {"joint": 0.2}, "joint")
    with pytest.raises(ValueError, match="'joint'"):
        combine_betas("mean", {"audio": 0.2}, "joint")


def test_multi_output_methods_name_their_outputs():
    dims = Dims(audio=6, video=5, text=4)
    a, v, t = torch.randn(7, 6), torch.randn(7, 5), torch.randn(3, 4)
    for name in ("cjme", "avgzslnet"):
        cls = get_method(name)
        m = cls(dims, resolve_config(name, "ucf", "main", {"hidden_encoder": 8, "hidden_text": 8})).eval()
        out = m.named_distances(a, v, t)
        assert set(out) == {"audio", "video", "joint"} and cls.predicts == "joint"
        assert torch.equal(out["joint"], m.distances(a, v, t))
        assert not torch.allclose(out["audio"], out["video"])


# ---------------------------------------------------------------- selection
def _history(hms):
    return [EpochRecord(epoch=i + 1, lr=1e-3, loss=1.0, val={"HM": h}) for i, h in enumerate(hms)]


def test_selection_rules():
    assert select(_history([0.2, 0.3, 0.3, 0.1])).epoch == 2  # first best
    assert select(_history([0.2, 0.3, 0.3, 0.1]), "zero-is-unset").epoch == 2
    # the codes' `if not best_score`: while the best HM is 0, every later epoch replaces it
    assert select(_history([0.0, 0.0, 0.0]), "first-best").epoch == 1
    assert select(_history([0.0, 0.0, 0.0]), "zero-is-unset").epoch == 3
    assert select(_history([0.0, 0.0, 0.1, 0.0]), "zero-is-unset").epoch == 3
    assert set(SELECTIONS) == {"first-best", "zero-is-unset"}
    with pytest.raises(ConfigError, match="'last'"):
        select(_history([0.1]), "last")


# ---------------------------------------------------------------- each method's reference protocol
# avbench's own methods (another test module may register a test-only one before this one is collected)
@pytest.mark.parametrize("method", sorted(m for m, c in available_methods().items()
                                          if c.__module__.startswith("avbench.methods.")))
def test_each_reference_protocol_resolves(method):
    cls = get_method(method)
    for ds, feats in BENCHMARKS:
        if not _accepts(cls, feats):
            continue
        if method in NO_REFERENCE:
            with pytest.raises(ConfigError, match=f"method {method} has no reference protocol"):
                resolve_protocol(method, "reference", ds, feats)
            continue
        preset, options, mode = resolve_protocol(method, "reference", ds, feats)
        assert preset in PRESETS and mode == "reference"
        assert set(PROTOCOL_OPTIONS) <= set(options)
        sources = reference_sources(method, ds, feats)
        for key in options:  # every option names the public code line it restores
            assert " L" in sources[key], (method, key)
        assert set(sources) - {"code", "preset"} == set(options) | ({"whole_sequences"} if
                                                                     cls.reference_protocol(ds, feats).whole_sequences
                                                                     else set()), (method, ds, feats)
        if "whole_sequences" in sources:
            assert " L" in sources["whole_sequences"]
        platform = resolve_config(method, ds, feats)
        reference = resolve_config(method, ds, feats, protocol_options=options)
        fixed = {k: v for k, v in options.items() if k not in PROTOCOL_OPTIONS}
        # reference mode changes exactly the declared settings, and each of them
        assert {k for k in platform if platform[k] != reference[k]} == {k for k in fixed if platform[k] != fixed[k]}
        assert all(reference[k] == v for k, v in fixed.items())
    # a preset name is the platform mode: no options, whatever the method
    assert resolve_protocol(method, "tcaf2022", "ucf", "main") == ("tcaf2022", {}, "platform")


def test_declared_reference_options():
    expected = {
        "avca": ("avca2022", {"bn_passes": True, "negatives": "independent"}),
        "cjme": ("avca2022", {"attention_weighting": "batch", "negatives": "independent", "bn_passes": True}),
        "avgzslnet": ("avca2022", {"negatives": "independent"}),
        "clipclap": ("clipclap2024", {"bn_passes": True}),
        "tcaf": ("tcaf2022", {"video_norm": "time", "audio_scale": 1 / 255, "bn_passes": True,
                              "eval_positions": "steps", "encode_padding": True, "crop_rule": "reference"}),
        "ale": ("avca2022", {}),
    }
    for method, (preset, opts) in expected.items():
        feats = "temporal-main" if method == "tcaf" else "main"
        got_preset, got, _ = resolve_protocol(method, "reference", "ucf", feats)
        assert got_preset == preset
        assert {k: v for k, v in got.items() if k not in PROTOCOL_OPTIONS} == opts, method
        assert (got["beta_rule"], got["selection"]) == ("mean", "zero-is-unset")
    # ActivityNet: TCAF's test collator (on whole sequences, see the test below)
    _, anet, _ = resolve_protocol("tcaf", "reference", "activitynet", "temporal-cls")
    assert anet["eval_crop"] == 300 and resolve_config("tcaf", "activitynet", "temporal-cls",
                                                       protocol_options=anet)["eval_crop"] == 300
    with pytest.raises(ConfigError, match="'nope'"):
        resolve_protocol("avca", "nope", "ucf", "main")


def test_reference_refuses_cropped_sequences():
    """TCAF's code reads whole sequences: a benchmark cropped when written (or not saying) is refused,
    with the way out; the platform mode and methods that average the sequences run on it."""
    b = synthetic_benchmark(variant="synthetic-temporal")
    assert b.sequence_crop == 0  # generated whole
    args = (b.settings_dataset, b.features)
    assert resolve_protocol("tcaf", "reference", *args, benchmark=b)[2] == "reference"
    b.extra["max_len"] = "300"
    with pytest.raises(DataError, match=r"^benchmark synthetic-temporal: the reference protocol of tcaf needs whole "
                                        r"sequences, as its code reads them \[src/dataset.py get_data_by_modality .*"
                                        r"\], and this file has sequences centre-cropped to 300 steps; write it again "
                                        r"\(another data version\) with --max-len 0 .* --protocol tcaf2022$"):
        resolve_protocol("tcaf", "reference", *args, benchmark=b)
    del b.extra["max_len"]
    with pytest.raises(DataError, match="does not record whether its sequences were cropped"):
        resolve_protocol("tcaf", "reference", *args, benchmark=b)
    assert resolve_protocol("tcaf", "tcaf2022", *args, benchmark=b) == ("tcaf2022", {}, "platform")
    assert resolve_protocol("avca", "reference", *args, benchmark=b)[2] == "reference"  # it averages them
    with pytest.raises(DataError, match="cropped"):  # a run checks it before it reads a split
        run_protocol(b, "tcaf", protocol="reference", seed=0, overrides={"epochs": 1}, stage1_only=True)
    assert b.loaded == []


def test_reference_options_cannot_be_overridden():
    _, options, _ = resolve_protocol("cjme", "reference", "ucf", "main")
    with pytest.raises(ConfigError, match="attention_weighting='sample'"):
        resolve_config("cjme", "ucf", "main", {"attention_weighting": "sample"}, protocol_options=options)
    same = resolve_config("cjme", "ucf", "main", {"attention_weighting": "batch", "lr": 0.01}, protocol_options=options)
    assert same["lr"] == 0.01  # other settings and a restated option are fine


def test_per_dataset_defaults_are_explicit():
    # AVCA on CLIP/CLAP features: the dataset's cls settings (chosen; nothing published), not UCF-main
    assert resolve_config("avca", "vggsound", "clipclap")["momentum"] == 0.99
    assert resolve_config("avca", "vggsound", "temporal-main")["batch_size"] == 64  # the main features' setting
    assert resolve_config("avca", "synthetic", "clipclap")["momentum"] == 0.99
    assert resolve_config("avca", "synthetic", "main")["momentum"] == 0.1
    assert resolve_config("ale", "ucf", "temporal-cls")["norm_inputs"] is True  # averaged cls features
    for method in ("avca", "cjme", "clipclap", "tcaf"):
        with pytest.raises(ConfigError, match="'elsewhere'"):
            resolve_config(method, "elsewhere", "temporal-main")


# ---------------------------------------------------------------- reference runs
def test_reference_run_records_mode_preset_and_options():
    r = run_protocol(synthetic_benchmark(TINY_SPEC), "cjme", protocol="reference", seed=0, overrides=TINY)
    assert (r.protocol, r.protocol_mode) == ("avca2022", "reference")
    assert r.protocol_options["attention_weighting"] == "batch" and r.config["attention_weighting"] == "batch"
    assert set(r.val["betas"]) == {"audio", "video", "joint"}
    assert r.beta == pytest.approx(combine_betas("mean", r.val["betas"], "joint"))
    # stage 1 alone (for sweeps) gives the same records
    recs = list(stage1_epochs(synthetic_benchmark(TINY_SPEC), "cjme", protocol="reference", seed=0, overrides=TINY))
    assert [x.val for x in recs] == [x["val"] for x in r.stage1]


def test_reference_mode_changes_only_the_declared_options():
    """A reference run trains exactly as its preset with the declared settings (β rule and selection aside)."""
    b = synthetic_benchmark(TINY_SPEC)
    for method in ("avca", "cjme"):
        ov = {**TINY, "hidden_encoder": 16, "hidden_decoder": 16} if method == "avca" else TINY
        preset, options, _ = resolve_protocol(method, "reference", b.dataset, b.features)
        ref = run_protocol(b, method, protocol="reference", seed=2, overrides=ov, stage1_only=True)
        fixed = {k: v for k, v in options.items() if k not in PROTOCOL_OPTIONS}
        plat = run_protocol(b, method, protocol=preset, seed=2, overrides={**ov, **fixed}, stage1_only=True)
        assert ref.config == plat.config
        assert [e["loss"] for e in ref.stage1] == [e["loss"] for e in plat.stage1]
        assert [e["val"]["HM"] for e in ref.stage1] == [e["val"]["HM"] for e in plat.stage1]


def test_stage2_learning_rate_replays_stage1_or_steps_on_validation(monkeypatch):
    """Platform: stage 2 replays the LR schedule stage 1 chose. Reference (the codes): ReduceLROnPlateau steps on
    the validation HM of every stage-2 epoch. The test splits are read last in both."""
    stage1 = [0.1, 0.2, 0.3, 0.4, 0.5]  # improving: stage 1 never cuts the LR, epoch 5 is best
    stage2 = [0.3, 0.2, 0.1, 0.1, 0.1]  # patience 1: a cut after epochs 3 and 5
    for protocol in ("avca2022", "reference"):
        hms = iter(stage1 + stage2)
        monkeypatch.setattr(trainer, "validation_record",
                            lambda *a, **k: {"beta": 0.0, "S": 0.5, "U": 0.5, "HM": next(hms), "ZSL": 0.5})
        b = synthetic_benchmark(TINY_SPEC)
        r = run_protocol(b, "ale", protocol=protocol, seed=0, overrides={**TINY, "epochs": 5, "lr_patience": 1})
        assert [e["lr"] for e in r.stage1] == [1e-3] * 5 and r.stage2_epochs == 5
        lrs = [e["lr"] for e in r.stage2]
        if protocol == "reference":
            assert r.protocol_options["stage2_lr"] == "val-plateau"
            assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
            assert [e["val"]["HM"] for e in r.stage2] == stage2
            assert b.loaded[-5:-2] == ["stage_2_train", "stage_1_val_seen", "stage_1_val_unseen"]
        else:
            assert "stage2_lr" not in r.protocol_options and lrs == [1e-3] * 5
            assert [e["val"] for e in r.stage2] == [None] * 5 and b.loaded[-3] == "stage_2_train"
        assert b.loaded[-2:] == ["stage_2_test_seen", "stage_2_test_unseen"]
        assert next(hms, None) == (None if protocol == "reference" else stage2[0])  # stage 2 validated or not


def test_stage2_validation_is_the_stage1_validation(monkeypatch):
    """Unpatched scoring: a reference run's stage-2 validation scores the stage-1 validation videos against the
    stage-1 classes (seen: stage 1's training classes), as the codes' metric on their validation split."""
    seen = []

    def record(method, data, *a, **k):
        seen.append((data.labels.tolist(), data.search_classes.tolist(), data.seen_classes.tolist(),
                     data.is_seen_video.tolist(), data.audio.rows(0, len(data.audio))[0].sum().item()))
        return validation_record(method, data, *a, **k)

    monkeypatch.setattr(trainer, "validation_record", record)
    b = synthetic_benchmark(TINY_SPEC)
    r = run_protocol(b, "ale", protocol="reference", seed=0, overrides={**TINY, "epochs": 3})
    assert len(seen) == 3 + r.stage2_epochs and all(x == seen[0] for x in seen)
    assert all(0.0 <= e["val"]["HM"] <= 1.0 for e in r.stage2)
    assert r.data_access == {"stage 1": "resident", "stage 2": "resident", "stage 2 validation": "resident",
                             "test": "resident"}
    # a budget that holds stage 2's training set but not its validation videos beside it: only they are streamed
    b = synthetic_benchmark(TINY_SPEC)
    train2 = b.nbytes("stage_2_train")
    small = run_protocol(b, "ale", protocol="reference", seed=0, overrides={**TINY, "epochs": 3},
                         memory_budget=str(train2 + 1))
    assert small.data_access["stage 2"] == "resident" and small.data_access["stage 2 validation"] == "streamed"
    assert [e["val"] for e in small.stage2] == [e["val"] for e in r.stage2] and small.HM == r.HM


# ---------------------------------------------------------------- BatchNorm passes
def _batch(dims, n=16, classes=4, temporal=False):
    g = torch.Generator().manual_seed(0)
    shape_a = (n, 5, dims.audio) if temporal else (n, dims.audio)
    shape_v = (n, 6, dims.video) if temporal else (n, dims.video)
    label = torch.arange(n) % classes
    b = Batch(audio=torch.randn(shape_a, generator=g), video=torch.randn(shape_v, generator=g), label=label,
              neg_audio=torch.randn(shape_a, generator=g), neg_video=torch.randn(shape_v, generator=g),
              neg_label=(label + 1) % classes, text=torch.randn(classes, dims.text, generator=g))
    if temporal:
        b.audio_len = b.neg_audio_len = torch.full((n,), 5)
        b.video_len = b.neg_video_len = torch.full((n,), 6)
    return b


def _bn_stats(m):
    return [t.clone() for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm1d)
            for t in (mod.running_mean, mod.running_var)]


@pytest.mark.parametrize("method,settings,temporal", [
    ("avca", {"hidden_encoder": 16, "hidden_decoder": 16, "dropout_encoder": 0.0, "dropout_decoder": 0.0,
              "dropout_additional": 0.0}, False),
    ("clipclap", {"embed_dim": 16, "hidden_decoder": 16, "dropout_encoder": 0.0, "dropout_decoder": 0.0,
                  "dropout_additional": 0.0}, False),
    ("cjme", {"hidden_encoder": 16, "hidden_text": 16, "dropout": 0.0}, False),
    ("tcaf", {"depth": 1, "heads": 2, "dim_head": 8, "dim": 16, "mlp_dim": 16, "embed_dim": 8, "hidden_encoder": 16,
              "hidden_decoder": 16, "dropout_transformer": 0.0, "dropout_encoder": 0.0, "dropout_decoder": 0.0,
              "dropout_additional": 0.0, "dropout_embedding": 0.0}, True),
])
def test_bn_passes_change_batchnorm_statistics_only(method, settings, temporal):
    """Without dropout, one step with and without bn_passes: same loss and gradients, other running statistics."""
    dims = Dims(audio=12, video=10, text=8)
    feats = "temporal-main" if temporal else "main"
    models = {}
    for on in (False, True):
        torch.manual_seed(0)
        cfg = resolve_config(method, "ucf", feats, {**settings, "bn_passes": on})
        m = get_method(method)(dims, cfg).train()
        opt = m.optimizer()
        batch = _batch(dims, temporal=temporal)  # independent negatives (neg_index None)
        loss, _ = m.loss(batch)
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.clone() for p in m.parameters() if p.grad is not None]
        opt.step()
        m.after_step(batch)
        models[on] = (float(loss.detach()), grads, _bn_stats(m))
    (l0, g0, s0), (l1, g1, s1) = models[False], models[True]
    assert l0 == l1  # the passes change no loss ...
    # ... and no gradient (up to the order autograd sums them in) ...
    assert len(g0) == len(g1) and all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(g0, g1))
    assert any(not torch.allclose(a, b) for a, b in zip(s0, s1))  # ... but BatchNorm running statistics


def test_avca_bn_passes_follow_the_public_update_sequence():
    """With bn_passes, V_proj's output BatchNorm sees (positives, negatives, V_rec(θv), then positives again)."""
    dims = Dims(audio=12, video=10, text=8)
    cfg = resolve_config("avca", "ucf", "main", {"hidden_encoder": 16, "hidden_decoder": 16, "dropout_encoder": 0.0,
                                                 "dropout_decoder": 0.0, "dropout_additional": 0.0,
                                                 "bn_passes": True, "momentum": 0.5})
    torch.manual_seed(0)
    m = get_method("avca")(dims, cfg).train()
    bn = m.V_proj.net[5]  # hidden: Linear, BN, ReLU, Drop; then Linear, BN(momentum), ...
    assert isinstance(bn, torch.nn.BatchNorm1d) and bn.momentum == 0.5
    seen = []
    bn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    batch = _batch(dims)
    loss, _ = m.loss(batch)
    loss.backward()
    m.after_step(batch)
    assert len(seen) == 4  # pos, neg, se_em_hat2, get_embeddings
    plain = get_method("avca")(dims, {**cfg, "bn_passes": False}).train()
    seen.clear()
    plain.V_proj.net[5].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    plain.loss(batch)
    plain.after_step(batch)
    assert len(seen) == 2  # neg, pos only


def test_cli_runs_the_reference_protocol(capsys):
    import json

    from avbench.cli import main

    assert main(["run", "--json", "--quiet", "--no-store", "--method", "avgzslnet", "--protocol", "reference",
                 "--epochs", "1", "--batches-per-epoch", "4", "--set", "batch_size=32"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (res["protocol"], res["protocol_mode"]) == ("avca2022", "reference")
    assert res["protocol_options"]["negatives"] == "independent" and res["config"]["negatives"] == "independent"
    assert main(["run", "--quiet", "--no-store", "--method", "mft", "--protocol", "reference"]) == 2
    assert "mft has no reference protocol" in capsys.readouterr().err
