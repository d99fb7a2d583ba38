"""MFT: audio-visual GZSL with a multimodal fusion transformer, a KL term and a cosine term.

Yang, Li, Ruan, Li, Tang, Xu. "An Audio-visual Generalized Zero-Shot Learning
Method Based on Multimodal Fusion Transformer", Journal of Electronics &
Information Technology 47(7), 2025 (doi 10.11999/JEIT241090). There is no public
code, and only the abstract could be consulted. It fixes: multi-head attention
fusion of the audio and visual features, a Kullback-Leibler divergence between
the predicted and the target class distribution, and a cosine-similarity loss
that pulls same-class representations together; results are on the ``cls``
splits with CLIP/CLAP features, compared with ClipClap-GZSL (FIELD_NOTES §6).
Everything else below is our choice, with the reason.

Model (one readable file)::

    φa = A_enc(a), φv = V_enc(v)                   Da, Dv -> hidden -> d (Linear-LN-GELU-Drop-Linear)
    x  = [φa + m_a, φv + m_v]                      2 tokens, learnt modality embeddings m
    x  = x + Drop(MHA(LN(x)))                      pre-norm transformer block (× depth):
    x  = x + Drop(FF(LN(x)))                       every token attends to both modalities
    θo = O_proj(LN(mean(x)))                       fused video embedding, d -> proj_dim
    θw = W_proj(w)                                 class text embedding, E -> hidden_text -> proj_dim
    s(x, c) = cos(θo, θw_c) / τ                    class logits

Losses, over the training classes of the stage (C rows of ``batch.text``)::

    L_kl  = KL(q_y ‖ softmax(s(x, ·)))             q_y: target distribution of class y
    L_cos = mean_{y_i=y_j, i≠j} (1 - cos(θo_i, θo_j)) + mean_{y_i≠y_j} [cos(θo_i, θo_j) - m]_+
          + mean_i (1 - cos(θo_i, θw_{y_i}))     + mean_{c≠y_i} [cos(θo_i, θw_c) - m]_+
    L     = kl_weight · L_kl · use_kl + cos_weight · L_cos · use_cosine

Prediction: distance(x, c) = -s(x, c) = -cos(θo, θw_c) / τ (the negated logits,
so -log-probability up to a per-video constant); calibrated stacking then
subtracts β from the seen classes' scores.

Ablation switches (the paper's ablations; all settable with ``--set``):
``use_attention=false`` (no cross-modal attention), ``use_kl=false``,
``use_cosine=false``, ``modality=audio`` / ``modality=video`` (one modality).

Choices where the paper leaves a detail open:
- Target distribution. A one-hot target would make the KL term plain cross
  entropy; the paper motivates it by the mismatch between output and target
  distributions and by better generalisation to unseen classes, so the target is
  smoothed: q_y = (1 - ε)·onehot(y) + ε·r_y, with r_y spread over the other
  training classes by the similarity of their (fixed, input) text embeddings to
  class y, softmax(cos(w_y, w_c) / τ_t) over c ≠ y (``kl_target=semantic``,
  ε = ``label_smoothing`` 0.1, τ_t = ``target_temperature`` 0.1). Semantically
  close classes get more mass, which is the knowledge unseen classes need.
  ``kl_target=uniform`` is ordinary label smoothing (r_y uniform over c ≠ y);
  ``label_smoothing=0`` gives cross entropy. The target carries no gradient.
- Cosine loss. Read as PyTorch's ``CosineEmbeddingLoss`` (the usual "cosine
  similarity loss"): same-class pairs are pulled to cosine 1, different-class
  pairs pushed below the margin m (``cos_margin``, 0.2). It is applied to every
  pair of videos of the batch (same-class videos together) and to each video and
  every training class embedding (a video towards its own class). The push half
  keeps the loss from being solved by collapsing every embedding onto one
  direction, which a pull-only loss with a trainable text projection allows;
  that matters for the ``use_kl=false`` ablation, where the cosine loss is the
  only one. ``cos_margin=1`` gives the pull-only reading. All pairs of the batch
  are used, so the protocol's sampled negatives (``batch.neg_*``) are not needed.
- Fusion. A pre-norm transformer (``depth`` 1, 4 heads) over the audio and video
  tokens, mean-pooled; the tokens get learnt modality embeddings (there is no
  order otherwise). ``use_attention=false`` removes only the attention sublayers
  (each token keeps its feed-forward sublayer, then the two are averaged), so the
  ablation isolates the cross-modal interaction rather than also removing the
  feed-forward capacity. With one modality there is one token (its attention
  attends to itself only); the other modality's encoder is not built.
- Logits are cosines scaled by 1/τ (τ = ``temperature`` 0.1) rather than raw dot
  products: the KL term then compares well-conditioned distributions, and the
  distances are on a scale where the protocol's β grids (steps 0.2 or 0.067) are
  fine enough; plain cosines in [-1, 1] would make one β step a large shift.
- LayerNorm, not BatchNorm, in the encoders and the text projection: the text
  projection sees the C training classes as its "batch" in training and the
  search space at test time, where batch statistics would differ.
- Settings follow ClipClap-GZSL's CLIP/CLAP setup (MFT compares to it on the same
  features; we assume it kept its training setup): Adam with weight decay 1e-5, batch 64, 300 batches per epoch,
  lr 7e-5 and 20 epochs on UCF, lr 1e-4 and 15 epochs on ActivityNet and
  VGGSound, dropout 0.1. avbench's ``main`` (SeLaVi) and ``cls`` (VGGish/C3D)
  features are not CLIP/CLAP; the same settings are used for both (a sweep over
  search_spaces/mft.yaml is the way to adapt them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avbench.errors import ConfigError
from avbench.methods import register
from avbench.methods.base import Batch, Dims, Method, adam
from avbench.methods.layers import Dropout, attention
from avbench.methods.onednn import Linear


def mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU -> Dropout -> Linear."""
    return nn.Sequential(
        Linear(d_in, hidden), nn.LayerNorm(hidden), nn.GELU(), Dropout(dropout), Linear(hidden, d_out)
    )


class FusionBlock(nn.Module):
    """Pre-norm transformer block over the modality tokens; ``attention=False`` keeps only the feed-forward part."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float, attention: bool):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"setting model_dim={dim} must be a multiple of heads={heads}")
        self.heads, self.attention = heads, attention
        if attention:
            self.norm1 = nn.LayerNorm(dim)
            self.qkv = Linear(dim, 3 * dim)
            self.out = Linear(dim, dim)
            self.drop1 = Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(Linear(dim, mlp_dim), nn.GELU(), Dropout(dropout), Linear(mlp_dim, dim))
        self.drop2 = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, dim]
        if self.attention:
            B, T, D = x.shape
            q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
            q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
            att = attention(q, k, v)  # F.scaled_dot_product_attention: softmax(q kᵀ / sqrt(d_head)) v
            x = x + self.drop1(self.out(att.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop2(self.ff(self.norm2(x)))


def target_distribution(text: torch.Tensor, smoothing: float, kind: str, temperature: float) -> torch.Tensor:
    """[C, C] row y = q_y = (1 - ε)·onehot(y) + ε·r_y, r_y over the classes c ≠ y."""
    C = text.shape[0]
    eye = torch.eye(C, dtype=text.dtype, device=text.device)
    if C == 1 or smoothing == 0.0:
        return eye
    if kind == "semantic":
        w = F.normalize(text, dim=1)
        sim = (w @ w.T / temperature).masked_fill(eye.bool(), float("-inf"))
        r = sim.softmax(dim=1)
    else:  # uniform
        r = (1.0 - eye) / (C - 1)
    return (1.0 - smoothing) * eye + smoothing * r


def kl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_i KL(target_i ‖ softmax(logits_i)) (0·log 0 = 0)."""
    return F.kl_div(logits.log_softmax(dim=1), target, reduction="batchmean")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` where ``mask``; 0 if the mask is empty (no host sync)."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def cosine_loss(emb: torch.Tensor, label: torch.Tensor, cls_emb: torch.Tensor, margin: float) -> torch.Tensor:
    """Cosine-embedding loss: same-class pairs to cosine 1, other pairs below ``margin``.

    Pairs: every two videos of the batch (``emb`` [B, d], ``label`` [B]) and each
    video with every class embedding (``cls_emb`` [C, d]; video i belongs to class label[i]).
    """
    e, t = F.normalize(emb, dim=1), F.normalize(cls_emb, dim=1)
    s_vv = e @ e.T
    same = label[:, None] == label[None, :]
    off_diag = ~torch.eye(len(label), dtype=torch.bool, device=emb.device)
    l_vv = masked_mean(1.0 - s_vv, same & off_diag) + masked_mean((s_vv - margin).clamp_min(0.0), ~same)
    s_vt = e @ t.T
    own = F.one_hot(label, t.shape[0]).bool()
    l_vt = masked_mean(1.0 - s_vt, own) + masked_mean((s_vt - margin).clamp_min(0.0), ~own)
    return l_vv + l_vt


@register("mft")
class MFT(Method):
    description = "multi-head attention fusion of audio and video; KL to a smoothed class target plus a cosine loss"
    paper = (
        "Yang et al., An Audio-visual Generalized Zero-Shot Learning Method Based on Multimodal Fusion Transformer, "
        "Journal of Electronics & Information Technology 2025"
    )

    MODALITIES = ("both", "audio", "video")
    TARGETS = ("semantic", "uniform")

    @classmethod
    def reference_protocol(cls, dataset: str, features: str):
        raise ConfigError("method mft has no reference protocol: it has no public code (built from the paper); "
                          "use a preset (e.g. --protocol clipclap2024)")

    @classmethod
    def defaults(cls, dataset: str, features: str) -> dict:
        # ClipClap-GZSL's run scripts (the setup MFT reports against): UCF 20 epochs at 7e-5,
        # ActivityNet and VGGSound 15 epochs at 1e-4; batch 64, 300 batches per epoch.
        epochs, lr = (20, 7e-5) if dataset not in ("activitynet", "vggsound") else (15, 1e-4)
        return {
            "hidden_encoder": 512,
            "model_dim": 256,
            "heads": 4,
            "depth": 1,
            "mlp_dim": 512,
            "proj_dim": 256,
            "hidden_text": 512,
            "dropout": 0.1,  # encoders and text projection
            "dropout_fusion": 0.1,
            "temperature": 0.1,
            "use_attention": True,
            "modality": "both",
            "use_kl": True,
            "kl_weight": 1.0,
            "kl_target": "semantic",
            "label_smoothing": 0.1,
            "target_temperature": 0.1,
            "use_cosine": True,
            "cos_weight": 1.0,
            "cos_margin": 0.2,
            "weight_decay": 1e-5,
            "lr": lr,
            "epochs": epochs,
            "batch_size": 64,
            "batches_per_epoch": 300,
        }

    def __init__(self, dims: Dims, config: dict):
        super().__init__(dims, config)
        c = self.config
        self.modality = str(c["modality"])
        if self.modality not in self.MODALITIES:
            raise ConfigError(f"setting modality={self.modality!r}: expected one of {', '.join(self.MODALITIES)}")
        if c["kl_target"] not in self.TARGETS:
            raise ConfigError(f"setting kl_target={c['kl_target']!r}: expected one of {', '.join(self.TARGETS)}")
        if not 0.0 <= float(c["label_smoothing"]) <= 1.0:
            raise ConfigError(f"setting label_smoothing={c['label_smoothing']!r}: expected a number in [0, 1]")
        if float(c["temperature"]) <= 0 or float(c["target_temperature"]) <= 0:
            raise ConfigError("settings temperature and target_temperature must be positive")
        if not (c["use_kl"] or c["use_cosine"]):
            raise ConfigError("settings use_kl=false and use_cosine=false leave MFT without a loss")
        h, d, r = int(c["hidden_encoder"]), int(c["model_dim"]), float(c["dropout"])
        if self.modality in ("both", "audio"):
            self.A_enc = mlp(dims.audio, h, d, r)
        if self.modality in ("both", "video"):
            self.V_enc = mlp(dims.video, h, d, r)
        n_tokens = 2 if self.modality == "both" else 1
        self.modality_emb = nn.Parameter(0.02 * torch.randn(n_tokens, d))
        self.fusion = nn.ModuleList(
            FusionBlock(d, int(c["heads"]), int(c["mlp_dim"]), float(c["dropout_fusion"]), bool(c["use_attention"]))
            for _ in range(int(c["depth"]))
        )
        self.norm = nn.LayerNorm(d)
        self.O_proj = Linear(d, int(c["proj_dim"]))
        self.W_proj = mlp(dims.text, int(c["hidden_text"]), int(c["proj_dim"]), r)
        self.scale = 1.0 / float(c["temperature"])

    # -- the two branches ---------------------------------------------------
    def embed_av(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """θo [B, proj_dim]: the fused audio-visual embedding."""
        tokens = []
        if self.modality in ("both", "audio"):
            tokens.append(self.A_enc(audio))
        if self.modality in ("both", "video"):
            tokens.append(self.V_enc(video))
        x = torch.stack(tokens, dim=1) + self.modality_emb
        for block in self.fusion:
            x = block(x)
        return self.O_proj(self.norm(x.mean(dim=1)))

    def logits(self, theta_o: torch.Tensor, theta_w: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(theta_o, dim=1) @ F.normalize(theta_w, dim=1).T

    def optimizer(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=float(self.config["lr"]), weight_decay=float(self.config["weight_decay"]))

    # -- training -----------------------------------------------------------
    def loss(self, batch: Batch):
        c = self.config
        theta_o = self.embed_av(batch.audio, batch.video)
        theta_w = self.W_proj(batch.text)  # all training classes
        total = theta_o.new_zeros(())
        parts = {}
        if c["use_kl"]:
            q = target_distribution(
                batch.text, float(c["label_smoothing"]), str(c["kl_target"]), float(c["target_temperature"])
            )[batch.label]
            l_kl = kl_loss(self.logits(theta_o, theta_w), q)
            total = total + float(c["kl_weight"]) * l_kl
            parts["l_kl"] = l_kl
        if c["use_cosine"]:
            l_cos = cosine_loss(theta_o, batch.label, theta_w, float(c["cos_margin"]))
            total = total + float(c["cos_weight"]) * l_cos
            parts["l_cos"] = l_cos
        return total, {k: v.detach() for k, v in parts.items()}

    # -- prediction ---------------------------------------------------------
    def distances(self, audio: torch.Tensor, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return -self.logits(self.embed_av(audio, video), self.W_proj(text))
