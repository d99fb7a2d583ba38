"""The two-stage protocol: test data out of reach, determinism, presets, learning."""

import numpy as np
import pytest

from avbench.data.benchmark import TEST_SPLITS, Benchmark
from avbench.data.synthetic import synthetic_benchmark
from avbench.errors import ConfigError, LeakError
from avbench.protocol.config import resolve_config
from avbench.protocol.run import SplitAccess, run_protocol

from conftest import SMALL, TINY


def _without_test_splits(b: Benchmark) -> Benchmark:
    """The same benchmark, but reading a test split is impossible."""
    inner = b._loader

    def loader(name, lazy=False):
        if name in TEST_SPLITS:
            raise AssertionError(f"test split {name} was read")
        return inner(name, lazy)

    b._loader = loader
    return b


def test_stage1_and_selection_run_without_test_data():
    full = run_protocol(synthetic_benchmark(SMALL), "avca", seed=3, overrides=TINY, stage1_only=True)
    blind = run_protocol(
        _without_test_splits(synthetic_benchmark(SMALL)), "avca", seed=3, overrides=TINY, stage1_only=True
    )
    assert (blind.best_epoch, blind.beta, blind.val) == (full.best_epoch, full.beta, full.val)


def test_test_splits_are_read_once_after_all_training():
    b = synthetic_benchmark(SMALL)
    run_protocol(b, "avca", seed=0, overrides=TINY)
    first_test = min(b.loaded.index(s) for s in TEST_SPLITS)
    assert all(s not in TEST_SPLITS for s in b.loaded[:first_test])
    assert "stage_2_train" in b.loaded[:first_test]
    assert sorted(b.loaded[first_test:]) == sorted(TEST_SPLITS)  # read once each, at the very end


def test_split_access_refuses_test_splits():
    access = SplitAccess(synthetic_benchmark(SMALL), ("stage_1_train",), "stage 1")
    with pytest.raises(LeakError, match="stage_2_test_unseen"):
        access.split("stage_2_test_unseen")


def test_same_seed_same_metrics_on_cpu():
    a = run_protocol(synthetic_benchmark(SMALL), "avca", seed=7, overrides=TINY)
    b = run_protocol(synthetic_benchmark(SMALL), "avca", seed=7, overrides=TINY)
    c = run_protocol(synthetic_benchmark(SMALL), "avca", seed=8, overrides=TINY)
    key = lambda r: (r.S, r.U, r.HM, r.ZSL, r.beta, r.best_epoch, [e["loss"] for e in r.stage1])
    assert key(a) == key(b)
    assert key(a) != key(c)


def test_independent_negatives_are_deterministic_too():
    cfg = {**TINY, "negatives": "independent", "epochs": 1}
    a = run_protocol(synthetic_benchmark(SMALL), "avca", seed=1, overrides=cfg)
    b = run_protocol(synthetic_benchmark(SMALL), "avca", seed=1, overrides=cfg)
    assert (a.S, a.U, a.ZSL) == (b.S, b.U, b.ZSL)


def test_presets_set_stage2_length_and_beta_grid():
    b = synthetic_benchmark(SMALL)
    r1 = run_protocol(b, "avca", protocol="avca2022", seed=0, overrides=TINY)
    r2 = run_protocol(b, "avca", protocol="clipclap2024", seed=0, overrides=TINY)
    assert r1.stage2_epochs == r1.best_epoch and len(r1.stage2) == r1.best_epoch
    # the ClipClap code's best_epoch + 1 counts from 0: the same length (tests/test_reference_protocol.py)
    assert r2.stage2_epochs == r2.best_epoch and len(r2.stage2) == r2.best_epoch
    assert len(r1.beta_curve["beta"]) == 16 and len(r2.beta_curve["beta"]) == 76
    assert r1.beta in r1.beta_curve["beta"]


def test_stage2_replays_the_stage1_learning_rates():
    r = run_protocol(synthetic_benchmark(SMALL), "avca", seed=0, overrides={**TINY, "epochs": 6, "lr_patience": 0})
    lrs1 = [e["lr"] for e in r.stage1]
    assert [e["lr"] for e in r.stage2] == lrs1[: r.stage2_epochs]


def test_avca_clearly_beats_chance_zsl():
    b = synthetic_benchmark()  # the default ActivityNet-shaped benchmark: 50 test-unseen classes
    r = run_protocol(b, "avca", seed=0, overrides={"epochs": 3, "batches_per_epoch": 40})
    chance = 1 / len(b.split_classes["stage_2_test_unseen"])
    assert r.ZSL > 3 * chance
    # GZSL over 200 classes (HM of chance predictions ~0.005); this short run reaches ~0.23
    assert r.HM > 0.15
    assert np.isfinite([r.S, r.U, r.HM, r.ZSL]).all()


def test_settings_are_typed_and_checked():
    cfg = resolve_config("avca", "ucf", "main", {"lr": "0.01", "epochs": "4", "reg_loss": "false"})
    assert cfg["lr"] == 0.01 and cfg["epochs"] == 4 and cfg["reg_loss"] is False
    with pytest.raises(ConfigError, match="no_such_key"):
        resolve_config("avca", "ucf", "main", {"no_such_key": 1})
    with pytest.raises(ConfigError, match="epochs"):
        resolve_config("avca", "ucf", "main", {"epochs": "many"})
    with pytest.raises(ConfigError, match="unknown method"):
        resolve_config("nope", "ucf", "main", {})


def test_per_dataset_defaults_follow_the_public_scripts():
    vgg = resolve_config("avca", "vggsound", "main", {})
    assert (vgg["batch_size"], vgg["dropout_encoder"], vgg["dropout_additional"], vgg["momentum"]) == (64, 0.0, 0.1, 0.1)
    anet = resolve_config("avca", "activitynet", "cls", {})
    assert (anet["dropout_decoder"], anet["momentum"], anet["batch_size"]) == (0.2, 0.99, 256)
