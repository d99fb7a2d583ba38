"""AVGZSLNet: learns on the small synthetic benchmark, is deterministic, loss as specified."""

import torch
import torch.nn.functional as F

from avbench.data.synthetic import synthetic_benchmark
from avbench.methods import get_method
from avbench.methods.base import Batch, Dims
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol

from conftest import SMALL

# a tiny budget: 45 steps; the published encoder dropout (0.8) on a 64-wide layer leaves too few units to
# learn the (hard) synthetic benchmark in so few steps, so the learning test uses 0.2
BUDGET = {"epochs": 3, "batches_per_epoch": 15, "batch_size": 64, "hidden_encoder": 64, "dropout_encoder": 0.2}


def test_avgzslnet_learns_and_is_deterministic():
    a = run_protocol(synthetic_benchmark(SMALL), "avgzslnet", seed=0, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SMALL), "avgzslnet", seed=0, overrides=BUDGET)
    assert a.ZSL > 3 / SMALL.n_test_unseen and a.HM > 0.1  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)


def test_avgzslnet_defaults_follow_the_run_scripts():
    for ds in ("ucf", "activitynet", "vggsound"):
        for feats in ("main", "cls"):
            c = resolve_config("avgzslnet", ds, feats)
            assert (c["hidden_encoder"], c["hidden_decoder"], c["proj_dim"]) == (1024, 64, 64)
            assert (c["dropout_encoder"], c["dropout_decoder"], c["margin"]) == (0.8, 0.5, 1.0)
            assert c["lr"] == 1e-3 and c["batch_size"] == 256 and c["normalize_decoder_outputs"]


def _model():
    torch.manual_seed(0)
    cfg = {**resolve_config("avgzslnet", "ucf", "main"), "hidden_encoder": 8, "hidden_text": 6, "hidden_decoder": 5,
           "proj_dim": 4}
    return get_method("avgzslnet")(Dims(audio=5, video=3, text=6), cfg).eval()


def _batch(n=8, classes=4):
    g = torch.Generator().manual_seed(1)
    audio, video = torch.randn(n, 5, generator=g), torch.randn(n, 3, generator=g)
    text = F.normalize(torch.randn(classes, 6, generator=g), dim=1)
    label, nb = torch.arange(n) % classes, (torch.arange(n) + 1) % n
    return audio, video, text, label, nb


def test_avgzslnet_loss_on_a_hand_made_case():
    m = _model()  # eval: no dropout, BatchNorm on running statistics
    audio, video, text, label, nb = _batch()
    reuse = Batch(audio, video, label, audio[nb], video[nb], label[nb], text, neg_index=nb)
    explicit = Batch(audio, video, label, audio[nb], video[nb], label[nb], text)
    total, parts = m.loss(reuse)
    assert torch.allclose(total, m.loss(explicit)[0], atol=1e-6)

    def T(x, p, n):
        return (((x - p).norm(dim=1) - (x - n).norm(dim=1) + 1.0).clamp_min(0)).mean()

    a, v, t = m.F_A(audio), m.F_V(video), m.F_T(text[label])
    dec = lambda z: F.normalize(m.F_DEC(z), dim=1)
    xa, xv, xt, w = dec(a), dec(v), dec(t), text[label]
    rec = sum((x - w).norm(dim=1).mean() for x in (xt, xa, xv))
    cmd = rec + T(xt, xa, xa[nb]) + T(xt, xv, xv[nb])
    ct = T(t, a, a[nb]) + T(a, t, t[nb]) + T(t, v, v[nb]) + T(v, t, t[nb])
    assert torch.allclose(parts["l_rec"], rec, atol=1e-5)
    assert torch.allclose(total, cmd + ct, atol=1e-4)


def test_avgzslnet_predicts_with_the_sum_of_both_distances():
    m = _model()
    audio, video, text, _, _ = _batch()
    with torch.no_grad():
        t = m.F_T(text)
        expected = torch.cdist(m.F_A(audio), t) + torch.cdist(m.F_V(video), t)
        assert torch.allclose(m.distances(audio, video, text), expected)
