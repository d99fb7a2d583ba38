"""TCAF: learns on per-second synthetic sequences, is deterministic, ignores padding, matches the public forward."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from avbench.data.synthetic import SyntheticSpec, synthetic_benchmark
from avbench.errors import ConfigError
from avbench.methods import get_method
from avbench.methods.base import Batch, Dims
from avbench.methods.tcaf import attention_mask, random_crop, reference_crop
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol
from avbench.search.space import load_space

# synthetic-temporal's class structure (UCF-GZSL's 30 / 12 / 9 classes), small. A tiny transformer learns the
# default difficulty only with far more steps (120 steps: ZSL 2.8 x chance), so the learning test uses an easier
# version of the generative model: less text noise, smaller private class codes, less feature noise.
SPEC = SyntheticSpec(n_seen=30, n_val_unseen=12, n_test_unseen=9, train_per_class=20, val_seen_per_class=4,
                     val_unseen_per_class=15, test_seen_per_class=4, test_unseen_per_class=15, audio_dim=32,
                     video_dim=24, temporal_len=(3, 8), text_noise=0.3, private_scale=0.3, video_noise=0.3,
                     audio_noise=0.3, offscreen=0.0)
# a tiny transformer; the published lr (5e-5..7e-5 for 15000 steps) is far too slow for 120 steps
SMALL_MODEL = {"depth": 1, "heads": 2, "dim_head": 16, "dim": 64, "mlp_dim": 64, "embed_dim": 16,
               "hidden_encoder": 64, "hidden_decoder": 64}
BUDGET = {"epochs": 6, "batches_per_epoch": 20, "batch_size": 64, "lr": 1e-3, **SMALL_MODEL}


def test_tcaf_learns_and_is_deterministic():
    bench = synthetic_benchmark(SPEC, variant="synthetic-temporal")
    assert bench.temporal and bench.split("stage_1_train").audio.ndim == 3
    a = run_protocol(bench, "tcaf", protocol="clipclap2024", seed=0, overrides=BUDGET)
    b = run_protocol(synthetic_benchmark(SPEC, variant="synthetic-temporal"), "tcaf", protocol="clipclap2024",
                     seed=0, overrides=BUDGET)
    assert a.ZSL > 3 / SPEC.n_test_unseen and a.HM > 0.1  # 3 x ZSL chance
    assert (a.S, a.U, a.HM, a.ZSL) == (b.S, b.U, b.HM, b.ZSL)


def test_tcaf_defaults_follow_the_best_configs():
    # (lr, ReduceLROnPlateau, depth, heads, dim_head, transformer / encoder dropout, encoder hidden, train crop)
    expected = {
        ("ucf", "temporal-main"): (5e-5, False, 5, 8, 64, 0.3, 0.4, 256, 0),
        ("vggsound", "temporal-main"): (7e-5, False, 8, 6, 128, 0.5, 0.2, 128, 0),
        ("activitynet", "temporal-main"): (7e-5, True, 8, 3, 128, 0.3, 0.2, 128, 60),
        ("ucf", "temporal-cls"): (7e-5, True, 6, 8, 64, 0.3, 0.3, 512, 0),
        ("vggsound", "temporal-cls"): (6e-5, False, 8, 8, 64, 0.5, 0.2, 512, 0),
        ("activitynet", "temporal-cls"): (7e-5, True, 6, 8, 64, 0.4, 0.3, 512, 60),
        ("synthetic", "temporal-main"): (5e-5, False, 5, 8, 64, 0.3, 0.4, 256, 0),  # unknown -> UCF
    }
    for (ds, feats), (lr, sched, depth, heads, dh, r_t, r_e, hid, crop) in expected.items():
        c = resolve_config("tcaf", ds, feats)
        assert (c["lr"], c["depth"], c["heads"], c["dim_head"]) == (lr, depth, heads, dh), (ds, feats)
        assert (c["dropout_transformer"], c["dropout_encoder"], c["hidden_encoder"], c["train_crop"]) == (
            r_t, r_e, hid, crop), (ds, feats)
        assert c["lr_patience"] == (3 if sched else 1000), (ds, feats)  # 1000: never fires
        assert (c["batch_size"], c["batches_per_epoch"], c["epochs"], c["weight_decay"]) == (64, 300, 50, 1e-5)
        assert (c["dim"], c["mlp_dim"], c["embed_dim"], c["proj_dim"], c["hidden_decoder"]) == (300, 128, 64, 64, 512)
        assert c["attention"] == "cross" and c["ce_loss"] and c["reg_loss"] and c["rec_loss"]
        cls_feats = feats.endswith("cls")
        assert (c["rate_audio"], c["rate_video"]) == ((0.96, 0.64) if cls_feats else (1.0, 1.0))
        assert c["audio_scale"] == (1 / 255 if cls_feats else 1.0)
    assert resolve_config("tcaf", "activitynet", "temporal-main")["dropout_decoder"] == 0.1


def test_tcaf_search_space_is_valid():
    for ds in ("ucf", "activitynet", "vggsound"):
        space = load_space("tcaf", ds)
        assert {"lr", "depth", "dropout_transformer"} <= set(space)
    assert "train_crop" in load_space("tcaf", "activitynet")


# ---- hand-made cases ---------------------------------------------------------------
DIMS = Dims(audio=5, video=4, text=7)


def _model(**over):
    torch.manual_seed(0)
    cfg = {**resolve_config("tcaf", "ucf", "temporal-main"), **SMALL_MODEL, "dim": 12, "embed_dim": 6,
           "dim_head": 4, "hidden_encoder": 10, "hidden_decoder": 9, "proj_dim": 5, "depth": 2, **over}
    return get_method("tcaf")(DIMS, cfg)


NO_DROPOUT = {k: 0.0 for k in ("dropout_transformer", "dropout_encoder", "dropout_decoder", "dropout_additional",
                               "dropout_embedding")}


def _batch(n=8, classes=4, T=(6, 5)):
    g = torch.Generator().manual_seed(1)
    audio, video = torch.randn(n, T[0], DIMS.audio, generator=g).abs(), torch.randn(n, T[1], DIMS.video, generator=g)
    a_len = torch.randint(1, T[0] + 1, (n,), generator=g)
    v_len = torch.randint(1, T[1] + 1, (n,), generator=g)
    a_len[0], v_len[1] = T[0], T[1]  # at least one full row each
    audio = audio * (torch.arange(T[0])[None, :, None] < a_len[:, None, None])
    video = video * (torch.arange(T[1])[None, :, None] < v_len[:, None, None])
    text = F.normalize(torch.randn(classes, DIMS.text, generator=g), dim=1)
    label, nb = torch.arange(n) % classes, (torch.arange(n) + 1) % n
    return Batch(audio, video, label, audio[nb], video[nb], label[nb], text, neg_index=nb,
                 audio_len=a_len, video_len=v_len, neg_audio_len=a_len[nb], neg_video_len=v_len[nb])


def _junk_padding(b: Batch, extra: int = 3) -> Batch:
    """The same videos with garbage in (and more of) the padded positions."""
    g = torch.Generator().manual_seed(7)

    def junk(x, lens):
        x = torch.cat((x, torch.zeros(x.shape[0], extra, x.shape[2])), dim=1)
        pad = torch.arange(x.shape[1])[None, :, None] >= lens[:, None, None]
        return torch.where(pad, 100 * torch.randn(x.shape, generator=g), x)

    return Batch(junk(b.audio, b.audio_len), junk(b.video, b.video_len), b.label, b.neg_audio, b.neg_video,
                 b.neg_label, b.text, neg_index=b.neg_index, audio_len=b.audio_len, video_len=b.video_len,
                 neg_audio_len=b.neg_audio_len, neg_video_len=b.neg_video_len)


@pytest.mark.parametrize("video_norm", ["feature", "time"])
@pytest.mark.parametrize("attention", ["cross", "self", "both"])
def test_tcaf_padding_does_not_leak(video_norm, attention):
    b = _batch()
    junk = _junk_padding(b)
    m = _model(video_norm=video_norm, attention=attention)
    # training: the same loss and gradients (dropout masks drawn from the same seed)
    m2 = copy.deepcopy(m)
    torch.manual_seed(3)
    total, _ = m.loss(b)
    torch.manual_seed(3)
    total_junk, _ = m2.loss(junk)
    assert torch.equal(total, total_junk)
    total.backward()
    total_junk.backward()
    for (name, p), q in zip(m.named_parameters(), m2.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, x), y in zip(m.named_buffers(), m2.buffers()):  # BatchNorm never saw a padded token
        assert torch.equal(x, y), name
    # evaluation: the same distances, and a row's distances do not depend on the other rows' lengths
    m.eval()
    with torch.no_grad():
        d = m.distances(b.audio, b.video, b.text, audio_len=b.audio_len, video_len=b.video_len)
        d_junk = m.distances(junk.audio, junk.video, b.text, audio_len=b.audio_len, video_len=b.video_len)
        assert torch.equal(d, d_junk)
        i = 3
        row = slice(i, i + 1)
        alone = m.distances(b.audio[row], b.video[row], b.text, b.audio_len[row], b.video_len[row])
        assert torch.allclose(alone[0], d[i], atol=1e-5)


def _public_theta_o(m, b: Batch):
    """The public ``get_embeddings`` (eval mode), written out: per-batch padding, encoders on every token,
    pad embedding on padded tokens, Conv1d(k=1) projections, additive -max attention masks, einsum attention."""
    a_mask = (torch.arange(b.audio.shape[1])[None] < b.audio_len[:, None]).float()  # 1 = valid, as the collator
    v_mask = (torch.arange(b.video.shape[1])[None] < b.video_len[:, None]).float()
    a, v = b.audio / 255.0, F.normalize(b.video)  # the public quirk: over time
    B, Ta, _ = a.shape
    Tv = v.shape[1]
    a = m.A_enc(a.reshape(B * Ta, -1)).view(B, Ta, -1)
    v = m.V_enc(v.reshape(B * Tv, -1)).view(B, Tv, -1)
    emb = m.embedding
    pad_embedding = torch.randn(emb.modal.weight.shape[1])  # added to padded tokens only: must not matter

    def tokens(x, modality, mask):
        t = torch.arange(x.shape[1]).float()  # get_embeddings: step indices
        p = (2.0 * math.pi * torch.stack((t, t), dim=-1)) @ emb.fourier_randn
        e = emb.modal.weight[modality] + emb.fourier(torch.cat([torch.sin(p), torch.cos(p)], dim=-1))
        e = e.expand(B, -1, -1) + (mask == 0)[..., None] * pad_embedding
        proj = emb.proj[modality]
        out = F.conv1d(torch.cat((x, e), dim=-1).transpose(1, 2), proj.weight[:, :, None], proj.bias)
        return out.transpose(1, 2)

    x = torch.cat((m.cls_token.expand(B, -1, -1), tokens(a, 0, a_mask), tokens(v, 1, v_mask)), dim=1)
    mask = F.pad(torch.cat((a_mask, v_mask), dim=1).bool(), (1, 0), value=True)
    mask = mask[:, None, :] * mask[:, :, None]
    mask[:, 1 : Ta + 1, 1 : Ta + 1] = False  # cross-attention only
    mask[:, Ta + 1 :, Ta + 1 :] = False
    tr = m.transformer
    for layer in tr.layers:
        q, k, vv = layer["qkv"](layer["norm"](x)).chunk(3, dim=-1)
        q, k, vv = (t.view(B, -1, tr.heads, tr.dim_head).transpose(1, 2) for t in (q, k, vv))
        dots = torch.einsum("bhid,bhjd->bhij", q, k) * tr.dim_head**-0.5
        dots = dots.masked_fill(~mask[:, None], -torch.finfo(dots.dtype).max)
        out = torch.einsum("bhij,bhjd->bhid", dots.softmax(-1), vv)
        out = out.transpose(1, 2).reshape(B, -1, tr.heads * tr.dim_head)
        x = layer["out"](out) + x
        x = layer["ff"](layer["norm"](x)) + x
    return m.O_proj(x[:, 0])


def test_tcaf_forward_matches_the_public_one():
    # public quirks on (audio / 255, video normalised over time); step rate 1 so seconds = indices
    m = _model(audio_scale=1 / 255, video_norm="time").eval()
    torch.manual_seed(5)  # non-trivial BatchNorm running statistics
    for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm1d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    b = _batch()
    with torch.no_grad():
        ours = m.embed_video(b.audio, b.video, b.audio_len, b.video_len)
        assert torch.allclose(ours, _public_theta_o(m, b), atol=1e-5)
        expected = torch.cdist(ours, m.W_proj(b.text))
        assert torch.allclose(m.distances(b.audio, b.video, b.text, b.audio_len, b.video_len), expected)


def test_tcaf_eval_positions_steps_are_the_public_get_embeddings():
    # cls-feature rates: training uses seconds (k * 0.96, k * 0.64); the public get_embeddings step indices k
    over = dict(audio_scale=1 / 255, video_norm="time", rate_audio=0.96, rate_video=0.64)
    b = _batch()
    public = _public_theta_o(_model(**over).eval(), b)
    with torch.no_grad():
        steps = _model(**over, eval_positions="steps").eval()
        expected = torch.cdist(public, steps.W_proj(b.text))
        assert torch.allclose(steps.distances(b.audio, b.video, b.text, b.audio_len, b.video_len), expected,
                              atol=1e-5)
        seconds = _model(**over).eval()  # the default: seconds, as in training
        assert not torch.allclose(seconds.distances(b.audio, b.video, b.text, b.audio_len, b.video_len), expected,
                                  atol=1e-3)
    with pytest.raises(ConfigError, match="eval_positions='frames'"):
        _model(eval_positions="frames")


def test_tcaf_bn_pass_runs_at_step_indices_with_eval_positions_steps():
    # the public train-mode get_embeddings after each step: step indices, like its evaluation
    over = dict(NO_DROPOUT, rate_audio=0.96, rate_video=0.64, bn_passes=True)
    b = _batch()
    stats = {}
    for positions in ("seconds", "steps"):
        m = _model(**over, eval_positions=positions)
        public = copy.deepcopy(m)
        m.loss(b)
        m.after_step(b)
        public.embed_video(b.audio, b.video, b.audio_len, b.video_len)  # the training forward: seconds
        with torch.no_grad():
            public.embed_video(b.audio, b.video, b.audio_len, b.video_len, steps=positions == "steps")
        stats[positions] = [x.clone() for x in m.O_proj.buffers()]
        assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(stats[positions], public.O_proj.buffers()))
    assert not all(torch.allclose(x, y) for x, y in zip(stats["seconds"], stats["steps"]))


def test_tcaf_encode_padding_lets_batchnorm_see_the_padded_steps():
    b = _batch()  # rows of several lengths: the batch is padded to its longest row
    Ta = int(b.audio_len.max())
    for on in (False, True):
        m = _model(**NO_DROPOUT, encode_padding=on)
        public = copy.deepcopy(m.A_enc)
        m.loss(b)
        x = b.audio[:, :Ta] * m.config["audio_scale"]
        # the public A_enc runs on the [B * T, d] view: every step of the batch's width, padding included
        public(x.reshape(-1, x.shape[-1]) if on else x[torch.arange(Ta)[None] < b.audio_len[:, None]])
        for got, want in zip(m.A_enc.buffers(), public.buffers()):
            assert torch.allclose(got, want, atol=1e-6)
    # evaluation: padding never reaches a distance
    m = _model(encode_padding=True).eval()
    with torch.no_grad():
        d = m.distances(b.audio, b.video, b.text, b.audio_len, b.video_len)
        junk = _junk_padding(b)
        assert torch.equal(d, m.distances(junk.audio, junk.video, b.text, b.audio_len, b.video_len))


def test_tcaf_reference_crop_is_the_public_fixed_collator():
    n, T, crop = 400, 80, 60
    # step k holds k + 1 (0 = padding); audio at 0.96 s, video at 0.64 s per step (cls features)
    audio = (1 + torch.arange(T).float())[None, :, None].expand(n, T, 2).clone()
    video = (1 + torch.arange(T).float())[None, :, None].expand(n, T, 3).clone()
    v_len = torch.randint(30, T + 1, (n,), generator=torch.Generator().manual_seed(0))
    a_len = torch.clamp((v_len.double() * 0.64 / 0.96).round().long() + torch.randint(-2, 3, (n,)), 1, T)
    v_len[:3] = torch.tensor([crop - 10, crop + 1, T])  # shorter than the window, one step longer, the longest
    torch.manual_seed(0)
    a, v, al, vl = reference_crop(audio, video, a_len, v_len, crop, 0.96, 0.64)
    crop_a = round(crop * 0.64 * 0.96)  # 37 audio steps (the public round(max_len * rate_video * rate_audio))
    assert a.shape == (n, crop_a, 2) and v.shape == (n, crop, 3)  # every row padded to the fixed width
    for i in range(n):
        diff_v, diff_a = int(v_len[i]) - crop, int(a_len[i]) - crop_a
        sv = int(v[i, 0, 0]) - 1
        assert 0 <= sv <= max(diff_v - 1, 0)  # randint(diff): never the last window
        assert int(vl[i]) == min(int(v_len[i]), crop) and not v[i, vl[i]:].any()
        sa = int(a[i, 0, 0]) - 1
        expected_sa = min(diff_a, round(sv * 0.64 / 0.96)) if sv > 0 and diff_a > 0 else 0
        assert sa == expected_sa, (i, sv, int(a_len[i]))
        assert a[i, : al[i], 0].tolist() == [float(sa + 1 + k) for k in range(int(al[i]))]
        assert not a[i, al[i]:].any()
    assert int(v[0, 0, 0]) == 1 and int(vl[0]) == crop - 10  # shorter: kept whole, padded
    assert int(v[1, 0, 0]) == 1  # randint(1) is always 0
    full = torch.full((n,), T)
    _, v, _, _ = reference_crop(audio, video, full, full, crop, 0.96, 0.64)
    assert set((v[:, 0, 0] - 1).long().tolist()) == set(range(T - crop))  # never the last window (start T - crop)


def test_tcaf_eval_crop_is_the_public_test_collator():
    n, T, crop = 6, 40, 10
    audio = (1 + torch.arange(T).float())[None, :, None].expand(n, T, 2).clone()
    video = (1 + torch.arange(T).float())[None, :, None].expand(n, T, 3).clone()
    v_len = torch.tensor([5, 10, 11, 25, 40, 40])
    a_len = torch.tensor([3, 7, 7, 17, 27, 5])  # the last: a short audio track
    a, v, al, vl = reference_crop(audio, video, a_len, v_len, crop, 0.96, 0.64, trim="center")
    assert a.shape[1] == 6 and v.shape[1] == crop  # round(10 * 0.64 * 0.96) audio steps
    # the video from (len - crop) // 2; the audio from min(len_a - 6, round(start_v * 0.64 / 0.96)) if start_v > 0
    assert (v[:, 0, 0] - 1).long().tolist() == [0, 0, 0, 7, 15, 15]
    assert (a[:, 0, 0] - 1).long().tolist() == [0, 0, 0, 5, 10, 0]
    assert vl.tolist() == [5, 10, 10, 10, 10, 10] and al.tolist() == [3, 6, 6, 6, 6, 5]
    # evaluation with eval_crop: the distances of the centre windows
    b = _batch(T=(9, 9))
    m = _model(eval_crop=4, rate_audio=0.96, rate_video=0.64).eval()
    plain = _model(rate_audio=0.96, rate_video=0.64).eval()
    with torch.no_grad():
        ca, cv, cal, cvl = reference_crop(b.audio, b.video, b.audio_len, b.video_len, 4, 0.96, 0.64, trim="center")
        expected = plain.distances(ca, cv, b.text, cal, cvl)
        assert torch.equal(m.distances(b.audio, b.video, b.text, b.audio_len, b.video_len), expected)
        assert not torch.allclose(plain.distances(b.audio, b.video, b.text, b.audio_len, b.video_len), expected)
    with pytest.raises(ConfigError, match="eval_crop=-1"):
        _model(eval_crop=-1)


def test_tcaf_reference_crop_rule_in_training():
    b = _batch(T=(9, 9))
    m = _model(train_crop=4, crop_rule="reference", encode_padding=True, bn_passes=True)
    total, parts = m.loss(b)
    assert torch.isfinite(total) and m._last_inputs[1].shape[1] == 4  # the fixed width, also for the BN pass
    m.after_step(b)
    with pytest.raises(ConfigError, match="crop_rule='random'"):
        _model(crop_rule="random")


def test_tcaf_attention_mask():
    a_valid = torch.tensor([[True, True, False]])
    v_valid = torch.tensor([[True, False]])
    # token order: cls, a0, a1, a2(pad), v0, v1(pad)
    cross = attention_mask(a_valid, v_valid, "cross")[0, 0].int().tolist()
    assert cross == [
        [1, 1, 1, 0, 1, 0],  # cls: itself and every valid token
        [1, 0, 0, 0, 1, 0],  # audio: cls and valid video
        [1, 0, 0, 0, 1, 0],
        [1, 0, 0, 0, 1, 0],  # a padded query: never read
        [1, 1, 1, 0, 0, 0],  # video: cls and valid audio
        [1, 1, 1, 0, 0, 0],
    ]
    self_only = attention_mask(a_valid, v_valid, "self")[0, 0].int().tolist()
    assert self_only[1] == [1, 1, 1, 0, 0, 0] and self_only[4] == [1, 0, 0, 0, 1, 0]
    assert attention_mask(a_valid, v_valid, "both")[0, 0].int().tolist()[2] == [1, 1, 1, 0, 1, 0]


def test_tcaf_random_crop():
    n, T = 200, 12
    audio = torch.arange(T).float()[None, :, None].expand(n, T, 2).clone()
    video = 100 + torch.arange(T).float()[None, :, None].expand(n, T, 3).clone()
    a_len = torch.randint(1, T + 1, (n,), generator=torch.Generator().manual_seed(0))
    v_len = torch.randint(1, T + 1, (n,), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    a, v, al, vl = random_crop(audio, video, a_len, v_len, 5, 1.0, 1.0)
    torch.manual_seed(0)
    again = random_crop(audio, video, a_len, v_len, 5, 1.0, 1.0)
    assert all(torch.equal(x, y) for x, y in zip((a, v, al, vl), again))  # seeded by torch's global RNG
    assert a.shape == (n, 5, 2) and v.shape == (n, 5, 3)
    assert torch.equal(vl, v_len.clamp_max(5)) and torch.equal(al, a_len.clamp_max(5))
    for i in range(n):
        sv = int(v[i, 0, 0]) - 100
        assert 0 <= sv <= max(int(v_len[i]) - 5, 0)
        assert v[i, : vl[i], 0].tolist() == [100.0 + sv + k for k in range(int(vl[i]))]
        assert not v[i, vl[i] :].any() and not a[i, al[i] :].any()
        sa = int(a[i, 0, 0])  # the audio window starts at the same second, clamped to the audio
        assert sa == min(sv, max(int(a_len[i]) - 5, 0))
        assert a[i, : al[i], 0].tolist() == [float(sa + k) for k in range(int(al[i]))]
    full = torch.full((n,), T)
    _, v, _, _ = random_crop(audio, video, full, full, 5, 1.0, 1.0)
    assert set((v[:, 0, 0] - 100).long().tolist()) == set(range(T - 5 + 1))  # every window, the last included
    # cls-feature rates: 5 video steps of 0.64 s = 3.2 s = 3 audio steps of 0.96 s
    a, v, al, vl = random_crop(audio, video, a_len, v_len, 5, 0.96, 0.64)
    assert a.shape[1] == 3 and v.shape[1] == 5


def test_tcaf_train_crop_runs_in_training():
    b = _batch(T=(9, 9))
    m = _model(train_crop=4)
    total, parts = m.loss(b)
    assert torch.isfinite(total) and set(parts) == {"l_ce", "l_reg", "l_rec"}


def _public_loss(m, b: Batch):
    """The public compute_loss on θo: one W_proj call per row, one per class."""
    theta_o = m.embed_video(b.audio, b.video, b.audio_len, b.video_len)
    w = b.text[b.label]
    theta_w = m.W_proj(w)
    rho_o, rho_w = m.D_o(theta_o), m.D_w(theta_w)
    ce = F.cross_entropy(theta_o @ m.W_proj(b.text).t(), b.label)
    reg = F.mse_loss(theta_o, theta_w)
    rec = F.mse_loss(w, rho_o) + F.mse_loss(w, rho_w)
    return ce, reg, rec


@pytest.mark.parametrize("train_mode", [False, True])
def test_tcaf_loss_on_a_hand_made_case(train_mode):
    m = _model(**NO_DROPOUT).train(train_mode)
    ref = copy.deepcopy(m)
    b = _batch()
    total, parts = m.loss(b)
    ce, reg, rec = _public_loss(ref, b)
    assert torch.allclose(parts["l_ce"], ce, atol=1e-6)
    assert torch.allclose(parts["l_reg"], reg, atol=1e-6)
    assert torch.allclose(parts["l_rec"], rec, atol=1e-6)
    assert torch.allclose(total, ce + reg + rec, atol=1e-6)
    total.backward()
    (ce + reg + rec).backward()
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    for (name, x), y in zip(m.named_buffers(), ref.buffers()):
        assert torch.allclose(x, y, atol=1e-7), name


def test_tcaf_loss_switches_and_bad_settings():
    b = _batch()
    m = _model(ce_loss=False, rec_loss=False).eval()
    total, parts = m.loss(b)
    assert set(parts) == {"l_reg"} and torch.allclose(total, _public_loss(m, b)[1])
    with pytest.raises(ConfigError):
        _model(ce_loss=False, reg_loss=False, rec_loss=False)
    with pytest.raises(ConfigError, match="attention"):
        _model(attention="sideways")
    with pytest.raises(ConfigError, match="video_norm"):
        _model(video_norm="l3")
    with pytest.raises(ConfigError, match="temporal"):
        _model().eval().distances(b.audio, b.video, b.text)
