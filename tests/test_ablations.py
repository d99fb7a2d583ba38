"""Every ablation switch of ClipClap and TCAF changes the trained model (MFT and EZ-AVGZL test theirs in their files).

TCAF needs depth >= 2 here: its output is the class token, which after one layer does not
depend on how the audio and video tokens may attend to each other.
"""

import pytest

from avbench.data.synthetic import SyntheticSpec, synthetic_benchmark
from avbench.protocol.run import run_protocol

SIZES = dict(train_per_class=12, val_seen_per_class=4, val_unseen_per_class=10, test_seen_per_class=4,
             test_unseen_per_class=10)
CLIPCLAP = synthetic_benchmark(SyntheticSpec(**SIZES, audio_dim=32, video_dim=24, text_dim=40), "synthetic-clipclap")
TEMPORAL = synthetic_benchmark(SyntheticSpec(**SIZES, audio_dim=16, video_dim=12, temporal_len=(2, 5)),
                               "synthetic-temporal")
BUDGET = {"epochs": 2, "batches_per_epoch": 6, "batch_size": 32}
SMALL_CLIPCLAP = {**BUDGET, "clip_text_dim": 16, "embedding_dim": 32, "hidden_size": 32, "proj_dim": 16}
SMALL_TCAF = {**BUDGET, "depth": 2, "heads": 2, "dim_head": 8, "dim": 32, "mlp_dim": 16, "hidden_encoder": 16,
              "hidden_decoder": 16, "embed_dim": 8, "proj_dim": 16}


def _trained(bench, method, settings):
    r = run_protocol(bench, method, seed=0, overrides=settings, stage1_only=True)
    return [e["loss"] for e in r.stage1], [e["val"]["HM"] for e in r.stage1], r.val


def _known(settings, method, bench):
    from avbench.protocol.config import resolve_config

    known = resolve_config(method, bench.dataset, bench.features, {})
    return {k: v for k, v in settings.items() if k in known}


@pytest.mark.parametrize("switch", [{"ce_loss": False}, {"reg_loss": False}, {"rec_loss": False},
                                    {"modality": "audio"}, {"modality": "video"}, {"word_embeddings": "clip"},
                                    {"word_embeddings": "clap"}])
def test_clipclap_switches(switch):
    base = _known(SMALL_CLIPCLAP, "clipclap", CLIPCLAP)
    assert _trained(CLIPCLAP, "clipclap", {**base, **switch}) != _trained(CLIPCLAP, "clipclap", base)


@pytest.mark.parametrize("switch", [{"ce_loss": False}, {"reg_loss": False}, {"rec_loss": False},
                                    {"attention": "self"}, {"attention": "both"}, {"video_norm": "none"},
                                    {"encode_padding": True}])
def test_tcaf_switches(switch):
    base = _known(SMALL_TCAF, "tcaf", TEMPORAL)
    assert _trained(TEMPORAL, "tcaf", {**base, **switch}) != _trained(TEMPORAL, "tcaf", base)
