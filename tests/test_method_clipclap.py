"""ClipClap: learns on a CLIP/CLAP-shaped synthetic benchmark, is deterministic, loss as specified."""

import copy

import pytest
import torch
import torch.nn.functional as F

from avbench.data.synthetic import SyntheticSpec, synthetic_benchmark
from avbench.errors import ConfigError
from avbench.methods import get_method
from avbench.methods.base import Batch, Dims
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol
from avbench.search.space import load_space

from conftest import SMALL

# SMALL's class structure and sizes, with the features' shapes of the paper:
# CLAP audio 1024-d, CLIP video 512-d, CLIP ‖ CLAP text 1536-d.
CLIPCLAP = SyntheticSpec(
    **{
        "train_per_class": SMALL.train_per_class,
        "val_seen_per_class": SMALL.val_seen_per_class,
        "val_unseen_per_class": SMALL.val_unseen_per_class,
        "test_seen_per_class": SMALL.test_seen_per_class,
        "test_unseen_per_class": SMALL.test_unseen_per_class,
        "audio_dim": 1024,
        "video_dim": 512,
        "text_dim": 1536,
    }
)
# a tiny budget: the published lr (7e-5 for 6000 steps) is far too slow for 60 steps
BUDGET = {"epochs": 3, "batches_per_epoch": 20, "batch_size": 64, "embed_dim": 64, "hidden_decoder": 64, "lr": 1e-3}


def test_clipclap_learns_and_is_deterministic():
    bench = synthetic_benchmark(CLIPCLAP)
    assert (bench.audio_dim, bench.video_dim, bench.text_dim) == (1024, 512, 1536)
    a = run_protocol(bench, "clipclap", protocol="clipclap2024", seed=0, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(CLIPCLAP), "clipclap", protocol="clipclap2024", seed=0, overrides=BUDGET)
    # 3 x ZSL chance; HM 10 x that of chance (1/200 on 200 classes): 60 steps on the hard benchmark
    assert a.ZSL > 3 / CLIPCLAP.n_test_unseen and a.HM > 0.05
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)


def test_clipclap_defaults_follow_the_run_commands():
    # synthetic (shaped like UCF-GZSL): UCF's, chosen explicitly; an unknown dataset is an error, not a fallback
    expected = {"ucf": (20, 7e-5), "activitynet": (15, 1e-4), "vggsound": (15, 1e-4), "synthetic": (20, 7e-5)}
    with pytest.raises(ConfigError, match="'other'"):
        resolve_config("clipclap", "other", "main")
    for ds, (epochs, lr) in expected.items():
        for feats in ("main", "cls", "clipclap", "temporal-main"):
            c = resolve_config("clipclap", ds, feats)
            assert (c["epochs"], c["lr"], c["batch_size"], c["batches_per_epoch"]) == (epochs, lr, 64, 300)
            assert (c["embed_dim"], c["hidden_decoder"], c["proj_dim"]) == (512, 512, 64)
            assert (c["dropout_encoder"], c["dropout_decoder"], c["dropout_additional"]) == (0.1, 0.1, 0.1)
            assert c["weight_decay"] == 1e-5 and c["ce_loss"] and c["reg_loss"] and c["rec_loss"]
            assert (c["modality"], c["word_embeddings"]) == ("both", "both")
            assert (c["lr_patience"], c["lr_factor"]) == (3, 0.1)


def test_clipclap_search_space_is_valid():
    for ds in ("ucf", "activitynet", "vggsound"):
        space = load_space("clipclap", ds)
        assert {"lr", "dropout_decoder", "dropout_additional"} <= set(space)


DIMS = Dims(audio=5, video=3, text=7)


def _model(**over):
    torch.manual_seed(0)
    cfg = {**resolve_config("clipclap", "ucf", "main"), "embed_dim": 6, "hidden_decoder": 5, "proj_dim": 4,
           "clip_text_dim": 3, **over}
    return get_method("clipclap")(DIMS, cfg)


def _batch(n=8, classes=4):
    g = torch.Generator().manual_seed(1)
    audio, video = torch.randn(n, DIMS.audio, generator=g), torch.randn(n, DIMS.video, generator=g)
    text = F.normalize(torch.randn(classes, DIMS.text, generator=g), dim=1)
    label, nb = torch.arange(n) % classes, (torch.arange(n) + 1) % n
    return Batch(audio, video, label, audio[nb], video[nb], label[nb], text, neg_index=nb)


def _public_loss(m, b: Batch):
    """The public compute_loss, written out (one full W_enc call per row, one per class)."""
    theta_o = m.O_proj(m.O_enc(torch.cat((b.video, b.audio), dim=1)))
    w = m.W_enc(b.text[b.label])
    theta_w = m.W_proj(w)
    rho_o, rho_w = m.D_o(theta_o), m.D_w(theta_w)
    classes = m.W_proj(m.W_enc(b.text))
    ce = F.cross_entropy(theta_o @ classes.t(), b.label)
    reg = F.mse_loss(theta_o, theta_w)
    rec = F.mse_loss(w, rho_o) + F.mse_loss(w, rho_w)
    return ce, reg, rec


@pytest.mark.parametrize("train_mode", [False, True])
def test_clipclap_loss_on_a_hand_made_case(train_mode):
    # train mode without dropout: BatchNorm on batch statistics (per-row batch, then the class rows)
    m = _model(dropout_encoder=0.0, dropout_decoder=0.0, dropout_additional=0.0).train(train_mode)
    ref = copy.deepcopy(m)
    b = _batch()
    total, parts = m.loss(b)
    ce, reg, rec = _public_loss(ref, b)
    assert torch.allclose(parts["l_ce"], ce, atol=1e-6)
    assert torch.allclose(parts["l_reg"], reg, atol=1e-6)
    assert torch.allclose(parts["l_rec"], rec, atol=1e-6)
    assert torch.allclose(total, ce + reg + rec, atol=1e-6)
    # same gradients and the same BatchNorm running statistics as the public call sequence
    total.backward()
    (ce + reg + rec).backward()
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    for (name, x), y in zip(m.named_buffers(), ref.buffers()):
        assert torch.equal(x, y), name


def test_clipclap_loss_switches():
    b = _batch()
    m = _model(ce_loss=False, rec_loss=False).eval()
    total, parts = m.loss(b)
    assert set(parts) == {"l_reg"} and torch.allclose(total, _public_loss(m, b)[1])
    with pytest.raises(ConfigError):
        _model(ce_loss=False, reg_loss=False, rec_loss=False).loss(b)


def test_clipclap_predicts_with_the_euclidean_distance():
    m = _model().eval()
    b = _batch()
    with torch.no_grad():
        theta_o = m.O_proj(m.O_enc(torch.cat((b.video, b.audio), dim=1)))
        expected = torch.cdist(theta_o, m.W_proj(m.W_enc(b.text)))
        assert torch.allclose(m.distances(b.audio, b.video, b.text), expected)


def test_clipclap_modality_and_word_embedding_ablations():
    b = _batch()
    # audio only: audio input, CLAP half of the text (columns clip_text_dim:)
    m = _model(modality="audio").eval()
    assert m.O_enc.net[0].in_features == DIMS.audio and m.W_enc.net[0].in_features == DIMS.text - 3
    with torch.no_grad():
        expected = torch.cdist(m.O_proj(m.O_enc(b.audio)), m.W_proj(m.W_enc(b.text[:, 3:])))
        assert torch.allclose(m.distances(b.audio, b.video, b.text), expected)
    m = _model(modality="video").eval()
    assert m.O_enc.net[0].in_features == DIMS.video and m.W_enc.net[0].in_features == 3
    m = _model(word_embeddings="clip")
    assert m.O_enc.net[0].in_features == DIMS.audio + DIMS.video and m.W_enc.net[0].in_features == 3
    m.loss(b)  # trains with the sliced text
    with pytest.raises(ConfigError):
        _model(word_embeddings="clap", clip_text_dim=DIMS.text)
    with pytest.raises(ConfigError):
        _model(modality="text")
