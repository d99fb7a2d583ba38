"""TCAF: temporal and cross-modal attention over per-second audio and visual features.

Mercea, Hummel, Koepke, Akata. "Temporal and cross-modal attention for audio-visual
zero-shot learning", ECCV 2022; public code: github.com/ExplainableML/TCAF-GZSL
(src/model_sequence.py ``Multimodal_Sequence_Transformer``, src/dataset.py
``DefaultCollator``, config/best/*).

Inputs are sequences (``inputs = "temporal"``): audio [B, Ta, Da], video [B, Tv, Dv],
zero-padded at the end, with the number of valid steps of each row.

Model (one readable file)::

    a_k = A_enc(s_a · a_k),  v_k = V_enc(norm(v_k))        per token, Da|Dv -> hidden -> dim (300)
    e_k = M[modality] + Four(t_k)                          64-d modality + Fourier time embedding,
                                                           t_k = k · rate (seconds from the start)
    x_k = Drop(P_m([x_k ‖ e_k]))                            (dim + 64) -> dim, one P per modality
    X   = Transformer([c, a_1..a_Ta, v_1..v_Tv])           c: a learnt class token
    θo  = O_proj(X[0])                                     dim -> 512 -> 64
    ρo  = D_o(θo)                                          64 -> 512 -> E (back to word space)
    θw  = W_proj(w),  ρw = D_w(θw)                         E -> 64 -> E

``Four(t) = Linear(cat(sin 2πtf, cos 2πtf))`` with fixed random frequencies
f = fourier_scale · (r_0 + r_1), r ~ N(0, 1)^{2×32} (the public ``[t, t] @ randn(2, 32)``).
Transformer layer (depth of them, no final norm; ONE LayerNorm per layer, shared by
both sublayers as in the public code)::

    x = x + Drop(Attn(LN(x), mask)),  x = x + FF(LN(x)),   FF = Lin-GELU-Drop-Lin-Drop

Attention (``attention=cross``, all published configs): the class token attends to
itself and every valid token, audio tokens attend to the class token and the valid
video tokens, video tokens to the class token and the valid audio tokens; padded
tokens are never attended to (key padding mask from the lengths). ``self`` keeps
only within-modality attention (+ class token), ``both`` allows everything.

Losses (all weights 1, each can be switched off)::

    l_ce  = CE( θo · W_proj(T)ᵀ , y )     T: the stage's C training class embeddings,
                                          plain dot-product logits
    l_reg = MSE(θo, θw)                   θw of the video's own class
    l_rec = MSE(w, ρo) + MSE(w, ρw)
    L     = l_ce + l_reg + l_rec

Prediction: Euclidean distance between θo and W_proj(t) of each class of the
search space (the public ``L2Loss`` evaluation: torch.cdist, not squared), in eval
mode. The published runs follow the ``tcaf2022`` protocol preset (β grid 0..3
step 0.2; stage 2 retrains for the selected number of epochs).

Reference protocol (``--protocol reference``; sources in ``reference_protocol``):
preset ``tcaf2022``; test β = mean of its three (identical) outputs' β's
(src/test.py L44-45); the codes' epoch selection; ``video_norm=time``,
``audio_scale=1/255``, ``bn_passes=true``, ``eval_positions=steps``,
``encode_padding=true`` and ``crop_rule=reference`` (see below), and on ActivityNet
``eval_crop=300``. It reads whole sequences as the code does, so it refuses a benchmark
whose sequences were cropped when it was written (the default ActivityNet import: use
``--max-len 0``; see ``eval_crop`` below); in stage 2 the learning rate steps on
validation HM (``stage2_lr=val-plateau``, below).

Settings (``defaults``): the public config/best/{best_main,best_cls}/best_<ds>.yaml
with config/default.yaml: Adam with weight decay 1e-5, batch 64, 300 batches per
epoch, 50 epochs, dim 300, mlp 128, time/modality embedding 64, Fourier scale 10,
decoder hidden 512, dim_out 64, cross-attention only, and per dataset/features:

    features/dataset  lr    sched depth heads dim_head drop_t hid_enc drop_enc drop_dec drop_add drop_emb
    main UCF          5e-5  no    5     8     64       0.3    256     0.4      0.2      0.1      0.2
    main VGGSound     7e-5  no    8     6     128      0.5    128     0.2      0.2      0.2      0.2
    main ActivityNet  7e-5  yes   8     3     128      0.3    128     0.2      0.1      0.1      0.2
    cls UCF           7e-5  yes   6     8     64       0.3    512     0.3      0.1      0.1      0.2
    cls VGGSound      6e-5  no    8     8     64       0.5    512     0.2      0.2      0.1      0.1
    cls ActivityNet   7e-5  yes   6     8     64       0.4    512     0.3      0.1      0.1      0.2

"sched" is ReduceLROnPlateau(max, patience 3, factor 0.1) on validation HM; the
protocol always runs that scheduler, so configs without it get ``lr_patience``
1000 (it can never fire). ActivityNet trains on random 60-step windows
(``train_crop``, ``crop_rule``); its sequences are centre-cropped to 300 steps when the
benchmark is imported unless ``--max-len 0`` keeps them whole (see ``eval_crop`` below;
the reference mode needs them whole). The synthetic benchmarks (nothing
published) get UCF's values for their feature type, chosen; any other dataset without
published values is refused (pass them with --set). Per-second CLIP/CLAP features (``temporal-clipclap``, from
``avbench data extract --frames per-second``) have no published TCAF settings: they
get the dataset's main-feature values (1-s steps, unscaled audio, as SeLaVi's).

Choices and deviations from the public code, with reasons:
- Deviation, switch ``encode_padding`` (default false; true in ``--protocol
  reference``). The public collator pads each batch to its own longest sequence
  (``max`` mode; ActivityNet's ``fixed`` mode pads to the window) and the token
  encoders (Linear-BN-ReLU) run on padded tokens too (src/model_sequence.py forward
  L812-815, get_embeddings L962-965), so BatchNorm statistics depend on how much
  padding a batch happens to have. By default the encoders run on valid tokens only
  (padded ones are zeros). Either way each batch is padded to its own longest
  sequence (the public ``max`` mode), or to the fixed window with ``crop_rule=reference``,
  and padded tokens are masked as keys, so in eval mode padding changes nothing. The public
  ``pad_embedding`` (added to padded tokens only, which nobody attends to) has no
  effect on any output and is left out; padded query rows attend to the class
  token instead of an all-masked row (their outputs are never read).
- Deviation, switch ``eval_positions`` (``seconds`` by default; ``steps`` in
  ``--protocol reference``). The public code trains with time stamps in seconds
  (k · 0.96 for VGGish audio, k · 0.64 for C3D video; forward L822-823) but its
  ``get_embeddings`` (evaluation, and the ``bn_passes`` pass) calls the position
  block without times (L970-971), i.e. with step indices k; for SeLaVi features (1
  step per second) the two agree. By default both use seconds (``rate_audio``,
  ``rate_video``: 1/1 for main features, 0.96/0.64 for cls); ``steps`` evaluates
  (and runs the ``bn_passes`` pass) at step indices. As in the public code, times
  count from the start of the (cropped) window.
- Video normalisation. The public ``F.normalize(v)`` on [B, T, D] normalises each
  feature channel over TIME (dim 1), so a step's values depend on the length of its
  video (src/model_sequence.py Multimodal_Sequence_Transformer.forward L791,
  get_embeddings L945). ``video_norm=feature`` (default) L2-normalises each step's
  feature vector; ``time`` reproduces the public behaviour (set by ``--protocol
  reference``); ``none`` leaves the video as is.
- Audio scaling. The public code divides audio by 255 on every feature set
  (forward L790, get_embeddings L944), which fits VGGish's uint8-quantised cls
  features (0..255) but is arbitrary for SeLaVi features, where it shrinks the
  encoder's pre-BatchNorm variance towards BatchNorm's eps. ``audio_scale`` is
  1/255 for cls features and 1 for main features by default; ``--protocol
  reference`` sets 1/255 everywhere.
- Deviation, switch ``crop_rule`` (``aligned`` by default; ``reference`` in
  ``--protocol reference``). Training crop (``train_crop`` steps, 0 = off; 60 on
  ActivityNet). ``aligned``: per row, the video window starts uniformly in
  [0, len - crop] (every window is possible), drawn from torch's global RNG; the
  audio window starts at the same time, clamped to the audio, and spans the same
  duration: round(crop · rate_video / rate_audio) steps; each batch is trimmed to
  its longest window. ``reference`` (``reference_crop``) is the public ``fixed``
  collator (src/dataset.py DefaultCollator L697-700, L734-757): the video start is
  ``randint(len - crop)`` (never the last window), the audio spans round(crop ·
  rate_video · rate_audio) steps (37 instead of 40 for cls features; 60 for main)
  from min(len_a - crop_a, round(start_v · rate_video / rate_audio)), or 0 when the
  video was not moved, and every row is padded to exactly that width.
- Deviation, switch ``eval_crop`` (0 by default; 300 in ``--protocol reference`` on
  ActivityNet), with the import's ``--max-len 0``. By default avbench centre-crops
  ActivityNet's sequences to 300 steps when the benchmark is imported, in every split
  and each modality on its own (data/layout.py ``DEFAULT_MAX_LEN``), and evaluates
  what is stored. The public code reads every video whole (src/dataset.py
  get_data_by_modality L1407-1409), draws its training windows from the whole video
  and crops only its validation and test batches (its test collator:
  config/best/*/best_anet.yaml ``batch_seqlen_test: fixed``, maxlen 300, centre: the
  video from (len - 300) // 2, the audio round(300 · rate_video · rate_audio) steps
  aligned to it as above, 184 for cls features). ``eval_crop=N`` applies that test
  collator (``reference_crop(trim="center")``) before every evaluation
  (config/best/best_{main,cls}/best_anet.yaml L2-4; src/dataset.py L739-741; the
  validation loaders, main.py L181, L184, L196, L212, and the test loader,
  get_evaluation.py L82-98, use that collator).
  ``--protocol reference`` needs the whole sequences in the file (``Reference
  .whole_sequences``; the file records its import crop): ``avbench data import
  --dataset activitynet --features temporal-cls --max-len 0`` (another data version).
  On a cropped benchmark, among them the default ActivityNet import and any file
  written before avbench recorded its crop, it refuses to run, since no setting could
  give back the code's windows: on the stored centred 300 steps the collator would keep
  the first 184 cls audio steps, about 48 s before the public window, which is aligned
  to the video's centre, and training windows would come from the central 300 steps
  only. The platform mode (``tcaf2022``) runs on either.
- The text projection's Linear runs once per training class and its rows are
  gathered for the batch (same values and gradients); its BatchNorm still sees the
  per-row batch (for l_reg, l_rec) and then the C class rows (for l_ce), in the
  public order, so running statistics follow the same updates.
- The word-space size of D_o and D_w is the benchmark's text dimension, and the
  transformer width ``dim`` is a setting (both 300 in the public code).
- The protocol's negatives (``batch.neg_*``) are not used (no TCAF loss has one).
- Deviation, switch ``bn_passes`` (default false; true in ``--protocol
  reference``): the public training loop runs an extra train-mode
  ``get_embeddings`` pass after every optimiser step (src/train.py train_step L93;
  src/model_sequence.py get_embeddings L943-988) for logging. It changes no
  gradient but updates the BatchNorm running statistics of A_enc, V_enc, O_proj and
  W_proj, all on the prediction path (one more update per step, from the updated
  weights); it costs a forward pass, so it is skipped by default. With
  ``bn_passes`` it runs on the step's (cropped) batch, without gradients.
- Not ported: the SAM optimiser option (unused by the published configs), the
  ``embed_augment_position`` option (off everywhere), the "fixed" time embedding
  table and the audio-only / video-only ablations.
- Learning-rate schedule, setting ``stage2_lr`` (protocol level; ``val-plateau`` in
  ``--protocol reference``): the public code steps the scheduler on validation HM in
  stage 2 too (src/train.py L31 ``model.optimize_scheduler(val_hm)``), when validation
  videos are training data; the platform mode replays the schedule that stage 1 chose
  (FIELD_NOTES §3: no choice from data the model trains on).
- Class embeddings: the public loader has the same row-order defect as AVCA's
  (FIELD_NOTES §4); avbench builds the class → embedding matrix by name, in both
  modes; ``--legacy-text-order`` (a separate axis of every result and leaderboard
  table) reproduces the defect.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avbench.errors import ConfigError
from avbench.methods import register
from avbench.methods.base import Batch, Dims, Method, Reference, adam, feature_family
from avbench.methods.layers import Dropout, EmbeddingNet, attention, rows
from avbench.methods.onednn import Linear, linear


class TokenEmbedding(nn.Module):
    """Modality + Fourier time embeddings, concatenated to each token and projected back to ``dim``.

    The public ``AudioVisualEmbedding`` with sinusoid time embeddings; its per-modality
    Conv1d(kernel 1) over [token ‖ embedding] is a Linear here, applied as
    W_x·x + (W_e·e + b) so the embedding part is computed once per step, not per row.
    """

    def __init__(self, dim: int, embed_dim: int, fourier_scale: float, dropout: float):
        super().__init__()
        if embed_dim % 2:
            raise ConfigError(f"setting embed_dim={embed_dim}: expected an even number (sin and cos halves)")
        self.dim = dim
        self.modal = nn.Embedding(2, embed_dim)  # 0 audio, 1 video
        self.fourier = Linear(embed_dim, embed_dim)
        self.register_buffer("fourier_randn", fourier_scale * torch.randn(2, embed_dim // 2))
        self.proj = nn.ModuleList([Linear(dim + embed_dim, dim) for _ in range(2)])
        self.drop = Dropout(dropout)

    def time(self, t: torch.Tensor) -> torch.Tensor:
        """[T] times in seconds -> [T, embed_dim]."""
        p = (2.0 * math.pi * torch.stack((t, t), dim=-1)) @ self.fourier_randn
        return self.fourier(torch.cat((torch.sin(p), torch.cos(p)), dim=-1))

    def forward(self, x: torch.Tensor, modality: int, rate: float) -> torch.Tensor:
        T = x.shape[1]
        t = torch.arange(T, device=x.device, dtype=x.dtype) * rate
        e = self.modal.weight[modality] + self.time(t)  # [T, embed_dim]
        proj = self.proj[modality]
        w_x, w_e = proj.weight[:, : self.dim], proj.weight[:, self.dim :]
        return self.drop(linear(x, w_x) + linear(e, w_e, proj.bias))


class Transformer(nn.Module):
    """Pre-norm transformer, one LayerNorm per layer shared by attention and feed-forward (as public)."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(
                nn.ModuleDict(
                    {
                        "norm": nn.LayerNorm(dim),
                        "qkv": Linear(dim, 3 * inner, bias=False),  # to_q, to_k, to_v
                        "out": nn.Sequential(Linear(inner, dim), Dropout(dropout)),
                        "ff": nn.Sequential(
                            Linear(dim, mlp_dim), nn.GELU(), Dropout(dropout), Linear(mlp_dim, dim), Dropout(dropout)
                        ),
                    }
                )
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, L, dim]; mask [B, 1, L, L] bool, True = query i may attend to key j."""
        B, L, _ = x.shape
        for layer in self.layers:
            q, k, v = layer["qkv"](layer["norm"](x)).chunk(3, dim=-1)
            q, k, v = (t.view(B, L, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
            att = attention(q, k, v, attn_mask=mask)  # F.scaled_dot_product_attention: scale dim_head^-0.5
            x = layer["out"](att.transpose(1, 2).reshape(B, L, -1)) + x
            x = layer["ff"](layer["norm"](x)) + x
        return x


def valid_mask(lens: torch.Tensor, T: int) -> torch.Tensor:
    """[B, T] bool, True on the first ``lens[b]`` steps."""
    return torch.arange(T, device=lens.device)[None, :] < lens[:, None]


def attention_mask(a_valid: torch.Tensor, v_valid: torch.Tensor, kind: str) -> torch.Tensor:
    """[B, 1, L, L] for the token order [cls, audio (Ta), video (Tv)].

    Key j is allowed for query i when j is valid (cls always is) and the pair's
    modalities are allowed by ``kind``. Padded queries keep at least the class
    token, so no row is empty; their outputs are never used.
    """
    B, Ta = a_valid.shape
    Tv = v_valid.shape[1]
    dev = a_valid.device
    mod = torch.cat((torch.zeros(1, device=dev), torch.ones(Ta, device=dev), torch.full((Tv,), 2.0, device=dev)))
    same = mod[:, None] == mod[None, :]
    is_cls = (mod[:, None] == 0) | (mod[None, :] == 0)
    if kind == "cross":
        pair = is_cls | ~same
    elif kind == "self":
        pair = is_cls | same
    else:  # both
        pair = torch.ones_like(same)
    key_ok = torch.cat((torch.ones(B, 1, dtype=torch.bool, device=dev), a_valid, v_valid), dim=1)
    return (pair[None] & key_ok[:, None, :]).unsqueeze(1)


def _window(x: torch.Tensor, start: torch.Tensor, n: int, lens: torch.Tensor, fixed: bool = False):
    """Rows ``x[b, start[b] : start[b] + n]`` (zeros past each row's length) and their new lengths.
    ``n`` is capped at the stored width unless ``fixed`` (then shorter tensors are zero-padded to ``n``)."""
    if fixed and x.shape[1] < n:
        x = F.pad(x, (0, 0, 0, n - x.shape[1]))
    T = x.shape[1]
    n = min(n, T)
    idx = (start[:, None] + torch.arange(n, device=x.device)[None, :]).clamp_max(T - 1)
    out = torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[2]))
    new_len = torch.minimum(lens - start, torch.full_like(lens, n))
    return out * valid_mask(new_len, n)[..., None].to(out.dtype), new_len


def random_crop(
    audio: torch.Tensor,
    video: torch.Tensor,
    a_len: torch.Tensor,
    v_len: torch.Tensor,
    crop: int,
    rate_audio: float,
    rate_video: float,
):
    """Random aligned windows: ``crop`` video steps and the audio steps of the same time span.

    Returns the cropped (audio, video, a_len, v_len), each window starting at step 0.
    Rows no longer than the window are kept whole.
    """
    crop_a = max(1, round(crop * rate_video / rate_audio))
    dev = video.device
    u = torch.rand(v_len.shape, device=dev, dtype=torch.float64)
    room_v = (v_len - crop).clamp_min(0)
    start_v = (u * (room_v + 1)).long().clamp_max(room_v)
    start_a = torch.round(start_v.double() * (rate_video / rate_audio)).long()
    start_a = torch.minimum(start_a, (a_len - crop_a).clamp_min(0))
    audio, a_len = _window(audio, start_a, crop_a, a_len)
    video, v_len = _window(video, start_v, crop, v_len)
    return audio, video, a_len, v_len


def reference_crop(
    audio: torch.Tensor,
    video: torch.Tensor,
    a_len: torch.Tensor,
    v_len: torch.Tensor,
    crop: int,
    rate_audio: float,
    rate_video: float,
    trim: str = "random",
):
    """The public ``DefaultCollator`` in ``fixed`` mode (src/dataset.py L697-700, L734-757):
    every row becomes exactly ``crop`` video steps and round(crop · rate_video · rate_audio)
    audio steps, zero-padded where shorter.

    A longer video starts at ``randint(len - crop)`` with ``trim="random"`` (training; never
    the last window), at (len - crop) // 2 with ``trim="center"`` (its test collator, L740);
    a longer audio starts at min(len_a - crop_a, round(start_v · rate_video / rate_audio))
    when the video was trimmed to a start > 0, else at 0. Returns (audio, video, a_len,
    v_len) of widths (crop_a, crop): the fixed padding the public encoders see.
    """
    crop_a = round(crop * rate_video * rate_audio)
    dev = video.device
    diff_v, diff_a = v_len - crop, a_len - crop_a
    if trim == "center":
        start_v = torch.where(diff_v > 0, diff_v.div(2, rounding_mode="floor"), 0)
    else:
        u = torch.rand(v_len.shape, device=dev, dtype=torch.float64)
        start_v = torch.where(diff_v > 0, (u * diff_v.clamp_min(1)).long(), 0)  # randint(diff): 0 .. diff - 1
    aligned = torch.round(start_v.double() * (rate_video / rate_audio)).long()
    start_a = torch.where((start_v > 0) & (diff_a > 0), torch.minimum(diff_a, aligned), 0)
    audio, a_len = _window(audio, start_a, crop_a, a_len, fixed=True)
    video, v_len = _window(video, start_v, crop, v_len, fixed=True)
    return audio, video, a_len, v_len


@register("tcaf")
class TCAF(Method):
    description = (
        "transformer over per-second audio and visual tokens with cross-modal attention and a class token; "
        "CE over class embeddings + regression + reconstruction"
    )
    paper = (
        "Mercea, Hummel, Koepke, Akata, Temporal and cross-modal attention for audio-visual "
        "zero-shot learning, ECCV 2022"
    )
    inputs = "temporal"

    # settings with a fixed set of values (kept as attributes of the model)
    CHOICES = {"attention": ("cross", "self", "both"), "video_norm": ("feature", "time", "none"),
               "eval_positions": ("seconds", "steps"), "crop_rule": ("aligned", "reference")}

    @classmethod
    def defaults(cls, dataset: str, features: str) -> dict:
        feats = feature_family(features)
        if features == "temporal-clipclap":
            # per-second CLIP/CLAP features (`avbench data extract --frames per-second`): nothing is published
            # for TCAF on them; the dataset's main (SeLaVi) settings, chosen explicitly: 1-s steps in both
            # modalities and unquantised audio, as SeLaVi's
            feats = "main"
        if feats not in ("main", "cls"):
            raise ConfigError(f"tcaf has no settings for features {features!r}: it takes the per-second "
                              "temporal-main or temporal-cls features")
        base = {
            "dim": 300,  # transformer_dim
            "mlp_dim": 128,
            "embed_dim": 64,  # transformer_embedding_dim (modality + time embeddings)
            "fourier_scale": 10.0,
            "proj_dim": 64,  # dim_out
            "hidden_decoder": 512,  # O_proj, D_o
            "attention": "cross",
            "weight_decay": 1e-5,
            "ce_loss": True,
            "reg_loss": True,
            "rec_loss": True,
            "video_norm": "feature",
            "audio_scale": 1.0 / 255.0 if feats == "cls" else 1.0,
            "rate_audio": 0.96 if feats == "cls" else 1.0,  # seconds per step
            "rate_video": 0.64 if feats == "cls" else 1.0,
            "bn_passes": False,  # the public train-mode get_embeddings pass after each step
            "eval_positions": "seconds",  # steps: the public get_embeddings' step indices (see the docstring)
            "encode_padding": False,  # true: the token encoders' BatchNorm sees padded steps, as public
            "crop_rule": "aligned",  # reference: the public collator's fixed-mode windows and padding
            "eval_crop": 0,  # steps: the public test collator's centre window (0 = the stored sequences)
            # protocol settings of config/default.yaml: bs 64, n_batches 300, 50 epochs
            "batch_size": 64,
            "batches_per_epoch": 300,
            "epochs": 50,
        }
        # lr, scheduler, depth, heads, dim_head, dropout transformer / encoder / decoder / additional / embedding,
        # encoder hidden, train crop: config/best/best_<main|cls>/best_<ucf|vggsound|anet>.yaml
        per_dataset = {
            ("ucf", "main"): (5e-5, False, 5, 8, 64, 0.3, 0.4, 0.2, 0.1, 0.2, 256, 0),  # best_main/best_ucf.yaml
            ("vggsound", "main"): (7e-5, False, 8, 6, 128, 0.5, 0.2, 0.2, 0.2, 0.2, 128, 0),  # best_main/best_vggsound
            ("activitynet", "main"): (7e-5, True, 8, 3, 128, 0.3, 0.2, 0.1, 0.1, 0.2, 128, 60),  # best_main/best_anet
            ("ucf", "cls"): (7e-5, True, 6, 8, 64, 0.3, 0.3, 0.1, 0.1, 0.2, 512, 0),  # best_cls/best_ucf.yaml
            ("vggsound", "cls"): (6e-5, False, 8, 8, 64, 0.5, 0.2, 0.2, 0.1, 0.1, 512, 0),  # best_cls/best_vggsound
            ("activitynet", "cls"): (7e-5, True, 6, 8, 64, 0.4, 0.3, 0.1, 0.1, 0.2, 512, 60),  # best_cls/best_anet
        }
        # the synthetic benchmarks (nothing published): UCF's, chosen explicitly
        ds = "ucf" if dataset == "synthetic" else dataset
        if (ds, feats) not in per_dataset:
            raise ConfigError(f"tcaf has no settings for dataset {dataset!r} (published: ucf, vggsound, "
                              "activitynet); pass them with --set")
        key = (ds, feats)
        lr, sched, depth, heads, dim_head, r_t, r_enc, r_dec, r_add, r_emb, hid, crop = per_dataset[key]
        base.update(
            lr=lr,
            lr_patience=3 if sched else 1000,  # 1000: the protocol's ReduceLROnPlateau never fires
            depth=depth,
            heads=heads,
            dim_head=dim_head,
            dropout_transformer=r_t,
            dropout_encoder=r_enc,
            dropout_decoder=r_dec,
            dropout_additional=r_add,
            dropout_embedding=r_emb,
            hidden_encoder=hid,
            train_crop=crop,
            # attention over up to 601 tokens (the default 300-step import or eval_crop=300; a whole-sequence
            # import without eval_crop attends over whole videos): keep evaluation chunks modest on ActivityNet
            eval_batch_size=64 if dataset == "activitynet" else 256,
        )
        return base

    @classmethod
    def reference_protocol(cls, dataset: str, features: str) -> Reference:
        options = {"video_norm": "time", "audio_scale": 1.0 / 255.0, "bn_passes": True,
                   "eval_positions": "steps", "encode_padding": True, "crop_rule": "reference"}
        sources = {}
        if dataset == "activitynet":  # the test collator; needs the whole sequences (whole_sequences below)
            options["eval_crop"] = 300
            sources["eval_crop"] = ("config/best/best_{main,cls}/best_anet.yaml L2-4 (batch_seqlen_test fixed, "
                                    "maxlen 300, center); src/dataset.py DefaultCollator L739-741; collator_test "
                                    "on the validation loaders, main.py L181, L184, L196, L212, and the test "
                                    "loader, get_evaluation.py L82-98")
        return Reference(
            code="github.com/ExplainableML/TCAF-GZSL",
            preset="tcaf2022",
            beta_rule="mean",
            selection="zero-is-unset",
            stage2_lr="val-plateau",
            options=options,
            whole_sequences=True,
            sources={
                **sources,
                "whole_sequences": "src/dataset.py get_data_by_modality L298-302, L1107-1109, L1407-1409 (every "
                                   "video's features read whole; only the collator crops)",
                "beta_rule": "src/test.py _get_test_performance L44-45 ((β_a + β_v + β_b + 1e-10) / 3; all three "
                             "are the θo output: src/utils.py evaluate_dataset_baseline)",
                "selection": "src/utils.py check_best_score L174-182 (`if not best_score`)",
                "stage2_lr": "src/train.py train L31 (model.optimize_scheduler(val_hm) after every epoch, in "
                             "stage 2 too; the HM is the metric's on the validation split: main.py L236, "
                             "L194-195)",
                "video_norm": "src/model_sequence.py Multimodal_Sequence_Transformer.forward L791, get_embeddings "
                              "L945 (F.normalize(v) on [B, T, D]: over time)",
                "audio_scale": "src/model_sequence.py Multimodal_Sequence_Transformer.forward L790, get_embeddings "
                               "L944 (a / 255. on every feature set)",
                "bn_passes": "src/train.py train_step L93 (get_embeddings in train mode after the step)",
                "eval_positions": "src/model_sequence.py get_embeddings L970-971 (position_encoder_block without "
                                  "times: step indices; forward L822-823 passes the collator's seconds)",
                "encode_padding": "src/model_sequence.py forward L812-815, get_embeddings L962-965 (A_enc/V_enc "
                                  "on the [b * t, d] view: padded steps included)",
                "crop_rule": "src/dataset.py DefaultCollator.__call__ L697-700 (fixed mode: crop video and "
                             "round(crop * rate_video * rate_audio) audio steps), L738 (randint(diff)), L741 "
                             "(audio start aligned to the video's), L734 (padding to the fixed width)",
            },
        )

    def __init__(self, dims: Dims, config: dict):
        super().__init__(dims, config)
        c = self.config
        for key, allowed in self.CHOICES.items():
            value = str(c[key])
            if value not in allowed:
                raise ConfigError(f"setting {key}={value!r}: expected one of {', '.join(allowed)}")
            setattr(self, key, value)
        if not (c["ce_loss"] or c["reg_loss"] or c["rec_loss"]):
            raise ConfigError("settings ce_loss, reg_loss and rec_loss are all off: nothing to train")
        self.encode_padding = bool(c["encode_padding"])
        for key in ("train_crop", "eval_crop"):
            if int(c[key]) < 0:
                raise ConfigError(f"setting {key}={c[key]!r}: expected 0 (off) or a number of steps")
        for key in ("rate_audio", "rate_video"):
            if float(c[key]) <= 0:
                raise ConfigError(f"setting {key}={c[key]!r}: expected seconds per step > 0")
        d, p, e = int(c["dim"]), int(c["proj_dim"]), int(c["embed_dim"])
        h_enc, h_dec = int(c["hidden_encoder"]), int(c["hidden_decoder"])
        r_enc, r_dec, r_add = float(c["dropout_encoder"]), float(c["dropout_decoder"]), float(c["dropout_additional"])

        self.A_enc = EmbeddingNet(dims.audio, d, r_enc, hidden=h_enc)
        self.V_enc = EmbeddingNet(dims.video, d, r_enc, hidden=h_enc)
        self.W_proj = EmbeddingNet(dims.text, p, r_add)
        self.D_w = EmbeddingNet(p, dims.text, r_add)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.embedding = TokenEmbedding(d, e, float(c["fourier_scale"]), float(c["dropout_embedding"]))
        self.transformer = Transformer(
            d, int(c["depth"]), int(c["heads"]), int(c["dim_head"]), int(c["mlp_dim"]), float(c["dropout_transformer"])
        )
        self.O_proj = EmbeddingNet(d, p, r_dec, hidden=h_dec)
        self.D_o = EmbeddingNet(p, dims.text, r_dec, hidden=h_dec)
        self.bn_passes = bool(c["bn_passes"])
        self._last_inputs = None  # the step's (cropped) inputs, for the bn_passes pass

    def optimizer(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=float(self.config["lr"]), weight_decay=float(self.config["weight_decay"]))

    # -- the audio-visual branch ----------------------------------------------
    def _tokens(self, enc: EmbeddingNet, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Encode the valid tokens only (BatchNorm sees no padding); padded tokens are zeros.
        With ``encode_padding`` (in training) every step of the batch's width is encoded, as in
        the public code; padded tokens are never attended to, so only BatchNorm sees them."""
        B, T, _ = x.shape
        if self.encode_padding and self.training:
            return enc(x.reshape(B * T, -1)).view(B, T, -1)
        out = x.new_zeros(B, T, int(self.config["dim"]))
        out[valid] = enc(x[valid])
        return out

    def embed_video(
        self, audio: torch.Tensor, video: torch.Tensor, audio_len: torch.Tensor, video_len: torch.Tensor,
        steps: bool = False, fixed_width: bool = False,
    ) -> torch.Tensor:
        """θo [B, proj_dim] for padded sequences and their lengths. ``steps``: time embeddings
        at step indices instead of seconds (the public get_embeddings); ``fixed_width``: keep
        the given padding (the public fixed-mode collator) instead of this batch's own."""
        c = self.config
        if not fixed_width:
            Ta, Tv = (int(n) for n in torch.stack((audio_len.max(), video_len.max())).tolist())
            audio, video = audio[:, :Ta], video[:, :Tv]  # this batch's own padding only
        a_valid, v_valid = valid_mask(audio_len, audio.shape[1]), valid_mask(video_len, video.shape[1])
        audio = audio * float(c["audio_scale"])
        if self.video_norm == "feature":
            video = F.normalize(video, dim=-1)
        elif self.video_norm == "time":  # the public code's F.normalize(v) on [B, T, D]
            video = F.normalize(video * v_valid[..., None].to(video.dtype), dim=1)
        rate_a, rate_v = (1.0, 1.0) if steps else (float(c["rate_audio"]), float(c["rate_video"]))
        a = self.embedding(self._tokens(self.A_enc, audio, a_valid), 0, rate_a)
        v = self.embedding(self._tokens(self.V_enc, video, v_valid), 1, rate_v)
        x = torch.cat((self.cls_token.expand(a.shape[0], -1, -1), a, v), dim=1)
        x = self.transformer(x, attention_mask(a_valid, v_valid, self.attention))
        return self.O_proj(x[:, 0])

    # -- training ---------------------------------------------------------------
    def loss(self, batch: Batch):
        c = self.config
        audio, video, a_len, v_len = batch.audio, batch.video, batch.audio_len, batch.video_len
        fixed = int(c["train_crop"]) > 0 and self.crop_rule == "reference"
        if int(c["train_crop"]) > 0:
            crop = reference_crop if fixed else random_crop
            audio, video, a_len, v_len = crop(
                audio, video, a_len, v_len, int(c["train_crop"]), float(c["rate_audio"]), float(c["rate_video"])
            )
        theta_o = self.embed_video(audio, video, a_len, v_len, fixed_width=fixed)
        if self.bn_passes:
            self._last_inputs = (audio, video, a_len, v_len, fixed)
        w = rows(batch.text, batch.label)
        theta_w = self.W_proj.forward_gathered(batch.text, batch.label)
        parts: dict[str, torch.Tensor] = {}
        total = theta_o.new_zeros(())
        if c["rec_loss"]:
            rho_o, rho_w = self.D_o(theta_o), self.D_w(theta_w)
            parts["l_rec"] = F.mse_loss(rho_o, w) + F.mse_loss(rho_w, w)
        if c["reg_loss"]:
            parts["l_reg"] = F.mse_loss(theta_o, theta_w)
        if c["ce_loss"]:
            logits = theta_o @ self.W_proj(batch.text).T  # after the per-row pass, as public
            parts["l_ce"] = F.cross_entropy(logits, batch.label)
        for value in parts.values():
            total = total + value
        return total, {k: v.detach() for k, v in parts.items()}

    def after_step(self, batch: Batch) -> None:
        """With ``bn_passes``: the public train-mode ``get_embeddings`` on the step's (cropped)
        batch (A_enc, V_enc, the transformer, O_proj; W_proj on the per-row class embeddings)."""
        if self.bn_passes and self._last_inputs is not None:
            audio, video, a_len, v_len, fixed = self._last_inputs
            self._last_inputs = None
            with torch.no_grad():
                self.embed_video(audio, video, a_len, v_len, steps=self.eval_positions == "steps", fixed_width=fixed)
                self.W_proj.forward_gathered(batch.text, batch.label)

    # -- prediction ---------------------------------------------------------------
    def distances(self, audio, video, text, audio_len=None, video_len=None) -> torch.Tensor:
        if audio_len is None or video_len is None:
            raise ConfigError("tcaf needs per-second features with their lengths (a temporal benchmark)")
        c = self.config
        if int(c["eval_crop"]) > 0:  # the public test collator's centre window (fixed mode)
            audio, video, audio_len, video_len = reference_crop(
                audio, video, audio_len, video_len, int(c["eval_crop"]), float(c["rate_audio"]),
                float(c["rate_video"]), trim="center",
            )
        theta_o = self.embed_video(audio, video, audio_len, video_len, steps=self.eval_positions == "steps")
        return torch.cdist(theta_o, self.W_proj(text))
