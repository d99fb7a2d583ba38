"""The built-in synthetic benchmark: seeded, shaped like a real benchmark, and not trivial."""

import numpy as np
import pytest

from avbench.data.benchmark import STORED_SPLITS
from avbench.data.ragged import Ragged
from avbench.data.synthetic import VARIANTS, SyntheticSpec, generate, synthetic_benchmark

TINY = SyntheticSpec(n_seen=6, n_val_unseen=3, n_test_unseen=3, train_per_class=4, val_seen_per_class=2,
                     val_unseen_per_class=3, test_seen_per_class=2, test_unseen_per_class=3, audio_dim=8,
                     video_dim=6, text_dim=10)


def raw(x) -> bytes:
    """The stored bytes of averaged features or of sequences' steps (and their offsets)."""
    return x.values.tobytes() + x.offsets.tobytes() if isinstance(x, Ragged) else x.tobytes()


@pytest.mark.parametrize("temporal", [None, (2, 5)])
def test_the_same_spec_gives_byte_identical_arrays(temporal):
    spec = SyntheticSpec(**{**TINY.__dict__, "temporal_len": temporal})
    a, b = generate(spec), generate(spec)
    assert a["embeddings"].tobytes() == b["embeddings"].tobytes()
    for name in STORED_SPLITS:
        sa, sb = a["splits"][name], b["splits"][name]
        assert sa.audio.dtype == sa.video.dtype == np.float32
        assert raw(sa.audio) == raw(sb.audio) and raw(sa.video) == raw(sb.video)
        assert (sa.labels == sb.labels).all() and (sa.video_ids == sb.video_ids).all()
    other = generate(SyntheticSpec(**{**spec.__dict__, "seed": spec.seed + 1}))
    assert raw(other["splits"]["stage_1_train"].audio) != raw(a["splits"]["stage_1_train"].audio)


def test_builtin_variants_have_real_class_structures():
    # ActivityNet-GZSL's 99 / 51 / 50 classes; synthetic-temporal UCF-GZSL's 30 / 12 / 9
    shapes = {"synthetic": (99, 51, 50, 512, 512, 300), "synthetic-clipclap": (99, 51, 50, 1024, 512, 1536),
              "synthetic-temporal": (30, 12, 9, 512, 512, 300)}
    for variant, (seen, val_unseen, test_unseen, da, dv, dt) in shapes.items():
        spec = VARIANTS[variant][1]
        assert (spec.n_seen, spec.n_val_unseen, spec.n_test_unseen) == (seen, val_unseen, test_unseen)
        assert (spec.audio_dim, spec.video_dim, spec.text_dim) == (da, dv, dt)
    b = synthetic_benchmark()
    assert [len(b.split_classes[s]) for s in ("stage_1_train", "stage_1_val_unseen", "stage_2_test_seen",
                                              "stage_2_test_unseen")] == [99, 51, 150, 50]
    assert np.allclose(np.linalg.norm(b.embeddings(), axis=1), 1.0, atol=1e-5)


def _ridge_zsl(g, modalities, lam=1.0):
    """ZSL of a ridge regression from (standardised) features to text, fitted on stage_1_train."""
    text = g["embeddings"].astype(np.float64)

    def feats(s):
        return np.concatenate([getattr(s, m) for m in modalities], 1).astype(np.float64)

    tr, te = g["splits"]["stage_1_train"], g["splits"]["stage_2_test_unseen"]
    x = feats(tr)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x = (x - mu) / sd
    w = np.linalg.solve(x.T @ x + lam * len(x) * np.eye(x.shape[1]), x.T @ text[tr.labels])
    classes = np.unique(te.labels)
    pred = classes[(((feats(te) - mu) / sd) @ w @ text[classes].T).argmax(1)]
    return np.mean([np.mean(pred[te.labels == c] == c) for c in classes])


def test_the_default_benchmark_is_hard_and_both_modalities_matter():
    g = generate(VARIANTS["synthetic"][1])
    chance = 1 / 50
    video, audio, both = (_ridge_zsl(g, m) for m in (("video",), ("audio",), ("video", "audio")))
    # a linear baseline is far above chance but far from perfect; video tells more than audio,
    # and the two together more than either (the numbers quoted in the module docstring)
    assert 5 * chance < audio < video < both < 0.6
    assert both - video > 0.05
    assert (round(video, 2), round(audio, 2), round(both, 2)) == pytest.approx((0.33, 0.24, 0.45), abs=0.02)


def test_the_data_do_not_depend_on_the_thread_count():
    """A Ray worker runs with one BLAS thread, the driver with all cores: both must make the same data
    (a BLAS product's last bits depend on its thread count; this fingerprint once did)."""
    import os
    import subprocess
    import sys

    code = "from avbench.data.synthetic import synthetic_benchmark; print(synthetic_benchmark().fingerprint)"
    prints = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        prints.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                  check=True).stdout.strip())
    assert prints == {synthetic_benchmark().fingerprint}


def test_each_load_is_its_own_benchmark_and_a_named_spec_is_not_mixed_up():
    # a worker loads the built-in benchmark for every trial and final it runs (generated once per process):
    # each load keeps its own audit of the splits it read and its own budget
    a, b = synthetic_benchmark(), synthetic_benchmark()
    b.split("stage_2_test_seen")
    b.budget["epochs"] = 1
    assert a.loaded == [] and b.loaded == ["stage_2_test_seen"]
    assert synthetic_benchmark().budget["epochs"] != 1 and synthetic_benchmark().loaded == []
    assert a.fingerprint == b.fingerprint
    # class names are not part of a spec's equality: a spec that names its classes is not served another's
    spec = SyntheticSpec(n_seen=3, n_val_unseen=2, n_test_unseen=2, train_per_class=4)
    names = [f"Named{c}" for c in range(spec.n_classes)]
    plain = synthetic_benchmark(spec)
    named = synthetic_benchmark(SyntheticSpec(**{**spec.__dict__, "class_names": names}))
    assert plain.class_names != names and named.class_names == names
