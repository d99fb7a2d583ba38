"""CJME: learns on the small synthetic benchmark, is deterministic, loss parts as specified."""

import pytest
import torch
import torch.nn.functional as F

from avbench.data.synthetic import synthetic_benchmark
from avbench.errors import ConfigError
from avbench.methods import get_method
from avbench.methods.base import Batch, Dims
from avbench.methods.cjme import attention_target, entropy
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol

from conftest import SMALL

BUDGET = {"epochs": 4, "batches_per_epoch": 30, "batch_size": 128, "hidden_encoder": 128}


def test_cjme_learns_and_is_deterministic():
    a = run_protocol(synthetic_benchmark(SMALL), "cjme", seed=0, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SMALL), "cjme", seed=0, overrides=BUDGET)
    assert a.ZSL > 3 / SMALL.n_test_unseen  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)


def test_cjme_defaults_follow_the_run_scripts():
    assert resolve_config("cjme", "ucf", "main")["dropout"] == 0.2
    assert resolve_config("cjme", "activitynet", "cls")["dropout"] == 0.2
    assert resolve_config("cjme", "vggsound", "main")["dropout"] == 0.0
    with pytest.raises(ConfigError, match="attention_weighting"):
        get_method("cjme")(Dims(4, 4, 4), {**resolve_config("cjme", "ucf", "main"), "attention_weighting": "x"})


def test_attention_target_and_entropy():
    h_a = torch.tensor([1.0, 2.0, 1.0, 1.05])
    h_v = torch.tensor([2.0, 1.0, 1.0, 1.0])
    # video less sure -> trust audio (0); audio less sure -> trust video (1); close -> 0.5
    assert attention_target(h_a, h_v, 0.1).tolist() == [0.0, 1.0, 0.5, 0.5]
    s = torch.randn(5, 7)
    assert torch.allclose(entropy(s), torch.distributions.Categorical(s.softmax(1)).entropy(), atol=1e-6)


def _model(**over):
    torch.manual_seed(0)
    cfg = {**resolve_config("cjme", "ucf", "main"), "hidden_encoder": 8, "hidden_text": 6, "proj_dim": 4, **over}
    return get_method("cjme")(Dims(audio=5, video=3, text=6), cfg)


def _batch(n=8, classes=4):
    g = torch.Generator().manual_seed(1)
    audio, video = torch.randn(n, 5, generator=g), torch.randn(n, 3, generator=g)
    text, label = torch.randn(classes, 6, generator=g), torch.arange(n) % classes
    nb = (torch.arange(n) + 1) % n
    return audio, video, text, label, nb


def test_cjme_in_batch_negatives_equal_explicit_ones():
    m = _model().eval()  # no dropout, BatchNorm on running statistics: the two paths must agree
    audio, video, text, label, nb = _batch()
    reuse = Batch(audio, video, label, audio[nb], video[nb], label[nb], text, neg_index=nb)
    explicit = Batch(audio, video, label, audio[nb], video[nb], label[nb], text)
    assert torch.allclose(m.loss(reuse)[0], m.loss(explicit)[0], atol=1e-6)


def test_cjme_batch_weighting_reproduces_the_public_broadcast():
    audio, video, text, label, nb = _batch()
    batch = Batch(audio, video, label, audio[nb], video[nb], label[nb], text, neg_index=nb)
    m = _model(attention_weighting="batch").eval()
    _, parts = m.loss(batch)
    a, v, t = m.f_a(audio), m.f_v(video), m.f_t(text)[label]
    w = m.attention(torch.cat([audio, video], 1))  # [B, 1], as the public code
    l_ta = F.triplet_margin_loss(t, a, a[nb], margin=1.0, reduction="none")
    l_tv = F.triplet_margin_loss(t, v, v[nb], margin=1.0, reduction="none")
    public = ((1 - w) * l_ta + w * l_tv).mean()  # [B,1] x [B] -> [B,B]
    assert torch.allclose(parts["l_ct"], public, atol=1e-6)
    per_sample = ((1 - w[:, 0]) * l_ta + w[:, 0] * l_tv).mean()
    assert torch.allclose(_model().eval().loss(batch)[1]["l_ct"], per_sample, atol=1e-6)


def test_cjme_predicts_with_the_modality_the_attention_picks():
    m = _model().eval()
    audio, video, text, _, _ = _batch()
    with torch.no_grad():
        d = m.distances(audio, video, text)
        t = m.f_t(text)
        use_video = m.attention(torch.cat([audio, video], 1)) >= 0.5
        expected = torch.where(use_video, torch.cdist(m.f_v(video), t), torch.cdist(m.f_a(audio), t))
    assert torch.allclose(d, expected)
