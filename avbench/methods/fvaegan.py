"""f-VAEGAN-D2: a conditional VAE-GAN that generates features of unseen classes.

Xian, Sharma, Schiele, Akata. "f-VAEGAN-D2: A Feature Generating Framework for
Any-Shot Learning", CVPR 2019; the audio-visual version is the generative
baseline of the AVCA-GZSL benchmark (Mercea et al., CVPR 2022), whose public code
(``vae_gan_d2_xu_fsl.py``, ``src/model_gen.py``, ``src/classifier_fsl.py``,
``src/args_gen.py``, ``run_scripts/*/f-vaegan.sh``) this file follows.

Model (one readable file, nanoGPT style). A video is the L2-normalised
concatenation x = [v ‖ a] / ‖[v ‖ a]‖ (D = Dv + Da), a class its text embedding t::

    E(x, t)  = (μ, log σ²)        encoder   [x ‖ t] -> 300 ReLU -> μ, log σ²  (300-d each)
    G(z, t)  = σ(logits)          generator [z ‖ t] -> 512 ReLU -> D, sigmoid  (z: 300-d)
    D1(x, t) = scalar             conditional WGAN critic   [x ‖ t] -> 512 LeakyReLU(0.2) -> 1
    D2(x)    = scalar             unconditional WGAN critic  x      -> 512 LeakyReLU(0.2) -> 1

Critic step (every training batch, the critics' own Adam)::

    x̃ = G(n, t),  n ~ N(0, I)
    L_D = D1(x̃, t) - D1(x, t) + λ · (‖∇_x̂ D1(x̂, t)‖₂ - 1)²,   x̂ = αx + (1-α)x̃, α ~ U(0, 1)
          [+ the same with D2 when d2_weight > 0]

Generator step (every ``critic_iter``-th batch; returned to the protocol)::

    z = μ + σ ⊙ ε,  x_rec = G(z, t)
    L_VAE = BCE(x_rec, x) + KL(N(μ, σ²) ‖ N(0, I))            (both summed, as the reference)
    L_GAN = -D1(x_rec, t) - D1(G(n, t), t)  [- d2_weight · D2(G(n, t))]   (batch means)
    L_G   = gan_weight · L_GAN + vae_weight · L_VAE

Classifier (in ``prepare_eval``, for each search space): a linear softmax layer
on L2-normalised features, trained with cross-entropy on the real training videos
of the seen classes of the space (from ``setup``) and ``syn_num`` generated
features G(n, t_c) per unseen class c of that space, for a fixed ``clf_epochs``
(Adam, lr 1e-3, β₁ 0.5, batch ``clf_batch_size``, weights N(0, 0.02²), as the
reference classifier).

Prediction: distances = -log softmax(classifier logits) over the search space,
so the protocol's calibrated stacking (β added to seen classes' distances, i.e.
log p_c - β) applies as for every other method.

Several optimisers. The encoder/generator and the critics are trained by
separate Adam optimisers (lr ``lr``, betas (0.5, 0.999), as the reference).
``optimizer()`` returns the generator-side optimiser (encoder + generator) to the
protocol, which backpropagates and steps the loss that ``loss()`` returns; the
critics' optimiser is an attribute, created in ``optimizer()`` and stepped inside
``loss()`` (critic step before the generator loss is built, as in the reference).
It follows the generator-side learning rate, so the protocol's schedule
(ReduceLROnPlateau in stage 1, replayed in stage 2) applies to both. On the
batches without a generator step ``loss()`` returns the last generator loss,
detached, joined to a throw-away leaf tensor so that ``backward()`` works while
no encoder/generator parameter gets a gradient: Adam skips parameters without a
gradient, so those batches leave the generator untouched (a zero gradient would
not: Adam's moments would still move the weights). The epoch loss the protocol
logs is thus the mean of the generator losses of the epoch's batches.

Where this file deliberately differs from the public code, and why:
- Full epochs. The reference breaks out of its batch loop after the first
  generator update (vae_gan_d2_xu_fsl.py L494 ``if batch_idx % 5 == 0:`` ... L523
  ``break``), so an "epoch" is one critic and one generator step (50 of each in a
  whole run). Here an epoch is the protocol's ``batches_per_epoch`` batches: a
  critic step on every batch and a generator step on every ``critic_iter``-th
  batch (the WGAN-GP schedule the reference's ``batch_idx % 5 == 0`` was written
  for), counted across epochs. The reference's schedule is ``--set
  batches_per_epoch=1 --set critic_iter=1`` (one critic and one generator step per
  epoch); with ``batches_per_epoch=1`` and the default ``critic_iter`` 5 the
  generator would step only every 5th epoch.
- No selection on test. The reference trains its final classifier for 30 epochs
  on the evaluation split's classes, evaluates it on the evaluation videos after
  every classifier epoch and keeps the best (in stage 2: on the TEST set;
  src/classifier_fsl.py L124-128 ``if best_acc_all <= acc_all``, evaluation split
  vae_gan_d2_xu_fsl.py L401-408), and keeps the GAN epoch with the best GZSL score
  on that same data (L590-593). Here the
  classifier trains a fixed ``clf_epochs`` (the reference's ``nepoch_classifier``
  = 30) and never sees evaluation videos; the GAN epoch and β are chosen by the
  protocol on validation only.
- Calibrated stacking. The reference has none (its GZSL "acc_all" is the HM of
  the plain argmax); here distances are -log-probabilities, so the protocol's β
  grid applies.
- One classifier per search space. ZSL is read from the GZSL classifier with
  the seen classes' columns removed (argmax of the unseen logits); the reference
  trains a second classifier on the generated features alone for ZSL (L584-587). The
  protocol scores both tasks from one distance matrix, so one classifier it is.
- The classifier reshuffles its training set every epoch (the reference shuffles
  once before its first epoch: src/classifier_fsl.py L92-94).
- D2. In the f-VAEGAN-D2 paper D2 is an unconditional critic on unlabelled
  features of the unseen classes (transductive). The AV reference is inductive:
  its D2 sees only the same real seen-class batch as D1, and its generator loss
  never uses D2 (vae_gan_d2_xu_fsl.py L518), so D2 cannot change the generated features or any prediction.
  ``d2_weight`` is the weight of D2 in the generator loss; the default 0.0 is the
  reference's behaviour, and with it D2 is not built at all (training it would
  only cost time). With ``d2_weight > 0`` D2 is trained on the real seen-class
  batch (never on evaluation or test videos) and enters the generator loss.
- The reference's D (``netD``) and D2 are the only weights it re-initialises
  (N(0, 0.02²), bias 0); encoder and generator keep torch's default init. Same here.
- Reconstruction loss: BCE computed from the generator's logits
  (``binary_cross_entropy_with_logits``), the same function as the reference's
  sigmoid + BCE but numerically stable and defined for targets outside [0, 1]
  (an L2-normalised feature may have negative entries; torch's BCE rejects those).
- The critic's fake batch is generated without building a graph. The reference
  generates it with gradients and feeds the undetached batch to the gradient
  penalty (L475), so the penalty's backward reaches the generator; those gradients
  are cleared by ``netG.zero_grad()`` (L500) before the generator step, so nothing
  changes. The generator step reuses the critic step's noise for its second GAN
  term, as the reference does.
- Feature order [video ‖ audio] as in the other avbench methods; the reference
  concatenates [audio ‖ video]. A permutation of the feature axis: the same model.
- There is no feedback module (that is tf-VAEGAN, Narayan et al. 2020); the
  reference AV code has none either.
- The run scripts pass ``--lr_scheduler`` and (VGGSound, stage 1) ``--reg_loss``,
  which the generative script ignores; the protocol's learning-rate schedule is
  the benchmark's, the same for every method.

Settings and their sources: ``latent_size`` 300, encoder hidden 300 and generator
hidden 512 (``--latent_size``, ``--encoder_layer_sizes [1024, 300]``,
``--decoder_layer_sizes [512, 1024]`` where 1024 = Da + Dv of the main features),
critic hidden 512 (``--ndh``), ``gan_weight`` 1e5, ``vae_weight`` 1, ``gp_weight``
(λ) 10, ``critic_iter`` 5, ``beta1`` 0.5, ``clf_epochs`` 30, ``clf_lr`` 1e-3
(args_gen defaults, not overridden by the run scripts); ``lr`` 1e-3, ``syn_num``
1000 (VGGSound 10000), 50 epochs of 500 batches (run scripts); batch 64 (``--bs``
and ``--batch_size`` defaults); classifier batch = ``syn_num`` (the reference
passes ``syn_num`` as the classifier's batch size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avbench.errors import ConfigError
from avbench.methods import register
from avbench.methods.base import Batch, Dims, Method, TrainData
from avbench.methods.layers import rows
from avbench.methods.onednn import Linear, linear


# ---------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------
def _normal_init(module: nn.Module) -> None:
    """N(0, 0.02²) weights, zero biases (the reference's ``weights_init``)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """q(z | x, t): [x ‖ t] -> hidden ReLU -> (μ, log σ²)."""

    def __init__(self, d_x: int, d_t: int, hidden: int, latent: int):
        super().__init__()
        self.body = nn.Sequential(Linear(d_x + d_t, hidden), nn.ReLU())
        self.mean = Linear(hidden, latent)
        self.log_var = Linear(hidden, latent)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(torch.cat((x, t), dim=1))
        return self.mean(h), self.log_var(h)


class Generator(nn.Module):
    """G(z, t): [z ‖ t] -> hidden ReLU -> D logits; the feature is their sigmoid."""

    def __init__(self, latent: int, d_t: int, hidden: int, d_x: int):
        super().__init__()
        self.net = nn.Sequential(Linear(latent + d_t, hidden), nn.ReLU(), Linear(hidden, d_x))

    def logits(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat((z, t), dim=1))

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z, t))


class Critic(nn.Module):
    """WGAN critic: [x (‖ t)] -> hidden LeakyReLU(0.2) -> 1 (D1 with a condition, D2 without)."""

    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(Linear(d_in, hidden), nn.LeakyReLU(0.2), Linear(hidden, 1))
        _normal_init(self)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x if t is None else torch.cat((x, t), dim=1))


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, t: torch.Tensor | None,
                     weight: float, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP: weight · mean_i (‖∇_x̂ critic(x̂_i)‖₂ - 1)², x̂ = α·real + (1-α)·fake, α ~ U(0, 1) per row."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    out = critic(x_hat, t) if t is not None else critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return weight * ((grad.norm(2, dim=1) - 1.0) ** 2).mean()


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """BCE(σ(logits), x) + KL(N(μ, σ²) ‖ N(0, I)), both summed over the batch (the reference's ``loss_fn``)."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kld = -0.5 * torch.sum(1.0 + log_var - mean.pow(2) - log_var.exp())
    return bce + kld


def _adam(params, lr: float, beta1: float) -> torch.optim.Optimizer:
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999))


def av_features(audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """The generated/classified feature: [v ‖ a], L2-normalised per row."""
    return F.normalize(torch.cat((video, audio), dim=1), dim=1)


# ---------------------------------------------------------------------------
# the method
# ---------------------------------------------------------------------------
@register("f-vaegan-d2")
class FVAEGAN(Method):
    description = "conditional VAE-GAN generating (video ‖ audio) features of unseen classes from text; softmax classifier"
    paper = "Xian, Sharma, Schiele, Akata, f-VAEGAN-D2: A Feature Generating Framework for Any-Shot Learning, CVPR 2019"

    @classmethod
    def reference_protocol(cls, dataset: str, features: str):
        raise ConfigError(
            "method f-vaegan-d2 has no reference protocol: its public code (AVCA-GZSL vae_gan_d2_xu_fsl.py) keeps "
            "the classifier epoch with the best score on the test set, which avbench never reproduces; use a preset"
        )

    @classmethod
    def defaults(cls, dataset: str, features: str) -> dict:
        syn_num = 10000 if dataset == "vggsound" else 1000  # run_scripts/*/f-vaegan.sh --syn_num
        return {
            "latent_size": 300,
            "encoder_hidden": 300,
            "decoder_hidden": 512,
            "critic_hidden": 512,
            "gan_weight": 1e5,
            "vae_weight": 1.0,
            "gp_weight": 10.0,
            "critic_iter": 5,
            "beta1": 0.5,
            "d2_weight": 0.0,
            "syn_num": syn_num,
            "clf_epochs": 30,
            "clf_lr": 1e-3,
            "clf_batch_size": syn_num,
            # protocol settings of the run scripts: --lr 0.001 --epochs 50 --n_batches 500, batch 64
            "lr": 1e-3,
            "batch_size": 64,
            "epochs": 50,
            "batches_per_epoch": 500,
        }

    def __init__(self, dims: Dims, config: dict):
        super().__init__(dims, config)
        c = self.config
        d_x, d_t = dims.audio + dims.video, dims.text
        self.latent = int(c["latent_size"])
        self.E = Encoder(d_x, d_t, int(c["encoder_hidden"]), self.latent)
        self.G = Generator(self.latent, d_t, int(c["decoder_hidden"]), d_x)
        self.D = Critic(d_x + d_t, int(c["critic_hidden"]))
        self.d2_weight = float(c["d2_weight"])
        self.D2 = Critic(d_x, int(c["critic_hidden"])) if self.d2_weight > 0 else None
        self.gan_weight, self.vae_weight = float(c["gan_weight"]), float(c["vae_weight"])
        self.gp_weight, self.critic_iter = float(c["gp_weight"]), max(1, int(c["critic_iter"]))
        # evaluation draws (generated features, classifier init, shuffling) come from their own
        # generator, seeded from the global RNG here: scoring never perturbs the training stream
        self.eval_seed = int(torch.randint(0, 2**62, ()).item())
        self._opt_g: torch.optim.Optimizer | None = None
        self._opt_d: torch.optim.Optimizer | None = None
        self._step = 0  # batches seen (a generator step on every critic_iter-th)
        self._last_g: torch.Tensor | None = None
        self._train: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # x, label, text
        self._clf: tuple[torch.Tensor, torch.Tensor] | None = None  # W [K, D], b [K]
        self._clf_key: tuple | None = None

    # -- optimisers ---------------------------------------------------------
    def critics(self) -> list[nn.Module]:
        return [self.D] + ([self.D2] if self.D2 is not None else [])

    def optimizer(self) -> torch.optim.Optimizer:
        """Encoder + generator Adam for the protocol; the critics' Adam is kept and stepped in ``loss``."""
        lr, beta1 = float(self.config["lr"]), float(self.config["beta1"])
        self._opt_g = _adam(list(self.E.parameters()) + list(self.G.parameters()), lr, beta1)
        self._opt_d = _adam([p for m in self.critics() for p in m.parameters()], lr, beta1)
        return self._opt_g

    def setup(self, train: TrainData) -> None:
        """Keep the stage's real training features for the classifier of ``prepare_eval``."""
        self._train = (av_features(train.audio, train.video), train.label, train.text)
        self._clf, self._clf_key = None, None

    # -- training -----------------------------------------------------------
    def _critic_step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        for m in self.critics():
            m.requires_grad_(True)
        with torch.no_grad():
            fake = self.G(noise, t)
        w_dist = self.D(x, t).mean() - self.D(fake, t).mean()
        cost = -w_dist + gradient_penalty(self.D, x, fake, t, self.gp_weight)
        parts = {"wasserstein": w_dist.detach(), "critic": cost.detach()}
        if self.D2 is not None:
            w2 = self.D2(x).mean() - self.D2(fake).mean()
            cost2 = -w2 + gradient_penalty(self.D2, x, fake, None, self.gp_weight)
            cost = cost + cost2
            parts["wasserstein2"] = w2.detach()
        self._opt_d.zero_grad(set_to_none=True)
        cost.backward()
        self._opt_d.step()
        return parts

    def loss(self, batch: Batch):
        if self._opt_g is None:  # used outside the protocol's trainer
            self.optimizer()
        for g in self._opt_d.param_groups:  # the critics follow the protocol's learning rate
            g["lr"] = self._opt_g.param_groups[0]["lr"]
        x = av_features(batch.audio, batch.video)
        t = rows(batch.text, batch.label)
        noise = torch.randn(x.shape[0], self.latent, device=x.device, dtype=x.dtype)
        parts = self._critic_step(x, t, noise)
        step, self._step = self._step, self._step + 1
        self._clf, self._clf_key = None, None
        if step % self.critic_iter != 0:
            # no generator step: a loss that gives no encoder/generator weight a gradient
            last = self._last_g if self._last_g is not None else torch.zeros((), device=x.device, dtype=x.dtype)
            leaf = torch.zeros((), device=x.device, dtype=x.dtype, requires_grad=True)
            return last + 0.0 * leaf, parts

        for m in self.critics():  # the critics are constants for the generator step
            m.requires_grad_(False)
        mean, log_var = self.E(x, t)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        rec_logits = self.G.logits(z, t)
        l_vae = vae_loss(rec_logits, x, mean, log_var)
        fake = self.G(noise, t)
        l_gan = -self.D(torch.sigmoid(rec_logits), t).mean() - self.D(fake, t).mean()
        if self.D2 is not None:
            l_gan = l_gan - self.d2_weight * self.D2(fake).mean()
        total = self.gan_weight * l_gan + self.vae_weight * l_vae
        self._last_g = total.detach()
        parts.update(vae=l_vae.detach(), gan=l_gan.detach())
        return total, parts

    # -- the classifier of a search space ---------------------------------------
    @torch.no_grad()
    def generate(self, text: torch.Tensor, n: int, gen: torch.Generator | None = None,
                 chunk: int = 65536) -> torch.Tensor:
        """[len(text) * n, D] L2-normalised features, n per class (rows grouped by class)."""
        t = text.repeat_interleave(n, dim=0)
        out = []
        for i in range(0, t.shape[0], chunk):
            tc = t[i : i + chunk]
            noise = torch.randn(tc.shape[0], self.latent, generator=gen, device=tc.device, dtype=tc.dtype)
            out.append(F.normalize(self.G(noise, tc), dim=1))
        return torch.cat(out) if out else t.new_zeros(0, self.dims.audio + self.dims.video)

    def _columns_of_training_classes(self, text: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """For each training class of ``setup``, its column in the search space (-1 if absent)."""
        _, _, train_text = self._train
        seen_cols = seen.nonzero().squeeze(1)
        d = torch.cdist(train_text.to(text.dtype), text[seen_cols], compute_mode="donot_use_mm_for_euclid_dist")
        match = (d <= 1e-6).cpu().tolist()
        cols, taken = [-1] * train_text.shape[0], set()
        for c, row in enumerate(match):
            for j, hit in enumerate(row):
                if hit and j not in taken:
                    cols[c] = int(seen_cols[j])
                    taken.add(j)
                    break
        if len(taken) != len(seen_cols):
            raise RuntimeError(
                f"f-vaegan-d2: {len(seen_cols) - len(taken)} seen class(es) of the search space are not training "
                "classes of setup(); the classifier needs their real features"
            )
        return torch.tensor(cols, dtype=torch.long, device=text.device)

    def prepare_eval(self, text: torch.Tensor, seen: torch.Tensor) -> None:
        """Train the softmax classifier of this search space (cached until the model changes)."""
        key = (self._step, text.shape, text.data_ptr(), seen.data_ptr())
        if self._clf_key is not None and self._clf_key[0] == key and torch.equal(self._clf_key[1], text) \
                and torch.equal(self._clf_key[2], seen):
            return
        seen = seen.to(device=text.device, dtype=torch.bool)
        dev = text.device
        gen = torch.Generator(device=dev).manual_seed(self.eval_seed)
        xs, ys = [], []
        if bool(seen.any()):
            if self._train is None:
                raise RuntimeError("f-vaegan-d2: prepare_eval() needs the real training features of setup()")
            x_real, y_real, _ = self._train
            col = self._columns_of_training_classes(text, seen)[y_real.to(dev)]
            keep = col >= 0
            xs.append(x_real.to(dev)[keep])
            ys.append(col[keep])
        unseen_cols = (~seen).nonzero().squeeze(1)
        n = int(self.config["syn_num"])
        was_training = self.G.training
        self.G.eval()
        try:
            xs.append(self.generate(text[unseen_cols], n, gen).to(text.dtype))
        finally:
            self.G.train(was_training)
        ys.append(unseen_cols.repeat_interleave(n))
        X, Y = torch.cat(xs), torch.cat(ys)
        self._clf = self._fit_classifier(X, Y, text.shape[0], gen)
        self._clf_key = (key, text.clone(), seen.clone())

    def _fit_classifier(self, X: torch.Tensor, Y: torch.Tensor, K: int, gen: torch.Generator):
        """Linear softmax classifier, fixed number of epochs, no evaluation data involved."""
        c = self.config
        W = (torch.randn(K, X.shape[1], generator=gen, device=X.device, dtype=X.dtype) * 0.02).requires_grad_(True)
        b = torch.zeros(K, device=X.device, dtype=X.dtype, requires_grad=True)
        opt = _adam([W, b], float(c["clf_lr"]), float(c["beta1"]))
        bs, n = max(1, int(c["clf_batch_size"])), X.shape[0]
        with torch.enable_grad():
            for _ in range(int(c["clf_epochs"])):
                perm = torch.randperm(n, generator=gen, device=X.device)
                for i in range(0, n, bs):
                    idx = perm[i : i + bs]
                    loss = F.cross_entropy(linear(X[idx], W, b), Y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        return W.detach(), b.detach()

    # -- prediction ---------------------------------------------------------
    def distances(self, audio: torch.Tensor, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        if self._clf is None or not torch.equal(self._clf_key[1], text):
            raise RuntimeError("f-vaegan-d2: call prepare_eval(text, seen) for this search space before distances()")
        W, b = self._clf
        return -F.log_softmax(linear(av_features(audio, video), W, b), dim=1)
