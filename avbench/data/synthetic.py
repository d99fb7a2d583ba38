"""A built-in synthetic AV-GZSL benchmark: no files, no network.

Generative model. Class ``c`` belongs to a superclass ``g(c)`` (one of G) and has a
class code ``μ_c = [s_c ; p_c]`` with a semantic part the text describes and a
private part it does not:

    s_c = (γ h_g(c) + u_c) / √(1 + γ²) ∈ R^k,   h_g, u_c ~ N(0, I_k)
    p_c ~ N(0, λ² I_m)
    t_c = normalise(W s_c + τ ξ_c) ∈ R^E,       W_ij ~ N(0, 1/k), ξ_c ~ N(0, I_E)

so classes of a superclass have similar text, part of every class is invisible to
the text (p_c), and part of the text is unrelated to audio and video (ξ_c). Video
``i`` of class ``c`` has a nuisance ``n_i ~ N(0, η² I_q)`` (recording conditions)
that both modalities see, and

    v_i = f_v([V μ_c + σ_v ε_i ; n_i]),          V ∈ R^{r_v × (k+m)}
    a_i = f_a([A b_i + σ_a ε'_i ; n_i]),         A ∈ R^{r_a × (k+m)}
    b_i = μ_c, or with probability p a fresh draw from the prior of μ (off-screen sound)

with ε, ε' ~ N(0, I), V and A fixed random projections (entries N(0, 1/(k+m))) to
fewer dimensions than the class code, each modality seeing a different part of it,
and ``f(x) = max(0, W₂ tanh(W₁ x + b₁) + b₂)`` fixed random maps shared by all
classes (hidden width 256). What is learnt on seen classes transfers to unseen ones
only through ``s_c``; fitting the seen classes' private codes or text noise can raise
seen accuracy at the cost of unseen accuracy, as on the real benchmarks. Defaults:
k = m = 16, G = 20, γ = λ = τ = η = 1, q = 4, r_v = 20, σ_v = 0.8, r_a = 16,
σ_a = 0.7, p = 0.2: video is the more informative modality and the two together
more than either (a ridge regression from features to text, trained on the seen
classes: test ZSL 33 % from video, 24 % from audio, 45 % from both).

The default class structure is ActivityNet-GZSL's (99 seen, 51 validation-unseen and
50 test-unseen classes: ZSL chance 2 %), with 60 training videos per seen class,
8 / 10 per class in the seen validation / test splits and 60 per unseen class.
``synthetic-temporal`` has UCF-GZSL's 30 / 12 / 9 classes and per-second sequences:
``T ~ U{lo..hi}`` steps, step ``j`` is ``f([x + ς e_j ; n_i])`` around the video's own
latent point ``x`` (ς = ``step_noise``), zero-padded to ``hi``.

The same spec always gives byte-identical arrays (one seeded generator, fixed
draw order). :func:`write_avca_layout` writes a benchmark in the public AVCA-GZSL
folder layout, so tests can run ``avbench data import`` end to end.
"""

from __future__ import annotations

import copy
import csv
import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avbench.data.benchmark import STORED_SPLITS, Benchmark, Split


@dataclass(frozen=True)
class SyntheticSpec:
    # class structure (default: ActivityNet-GZSL's 99 / 51 / 50 classes)
    n_seen: int = 99
    n_val_unseen: int = 51
    n_test_unseen: int = 50
    train_per_class: int = 60
    val_seen_per_class: int = 8
    val_unseen_per_class: int = 60
    test_seen_per_class: int = 10
    test_unseen_per_class: int = 60
    audio_dim: int = 512
    video_dim: int = 512
    text_dim: int = 300
    # generative model (see the module docstring)
    semantic_dim: int = 16  # k: class factors the text describes
    private_dim: int = 16  # m: class factors the text does not describe
    n_groups: int = 20  # G: superclasses; classes of a group share part of their semantics
    group_scale: float = 1.0  # γ
    private_scale: float = 1.0  # λ
    text_noise: float = 1.0  # τ: the text's own part, unrelated to audio and video
    video_noise: float = 0.8  # σ_v
    audio_noise: float = 0.7  # σ_a
    video_rank: int = 20  # r_v: video sees an r_v-dimensional view of the class code
    audio_rank: int = 16  # r_a: audio sees another, smaller view
    offscreen: float = 0.2  # p: share of videos whose sound is unrelated to their class
    nuisance_dim: int = 4  # q: per-video factors (recording conditions) both modalities see
    nuisance_scale: float = 1.0  # η
    seed: int = 1234
    # temporal variant: each video is a sequence of T ~ U[lo, hi] per-second features
    # (zero-padded to hi), each step drawn around the video's own latent point
    temporal_len: tuple[int, int] | None = None
    step_noise: float = 0.5
    class_names: list[str] | None = field(default=None, compare=False)

    @property
    def n_classes(self) -> int:
        return self.n_seen + self.n_val_unseen + self.n_test_unseen


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` without BLAS: a BLAS product's last bits depend on its thread count (a benchmark made
    on a 1-thread Ray worker differed from the 2-thread driver's), numpy's own loop does not."""
    return np.einsum("ij,jk->ik", a, b, optimize=False)


def _random_map(rng: np.random.Generator, d_in: int, d_out: int, hidden: int = 256):
    """x -> max(0, tanh(x W1 + b1) W2 + b2), fixed random weights (computed in float32)."""
    w1 = (rng.standard_normal((d_in, hidden)) / np.sqrt(d_in)).astype(np.float32)
    b1 = (rng.standard_normal(hidden) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((hidden, d_out)) / np.sqrt(hidden)).astype(np.float32)
    b2 = (rng.standard_normal(d_out) * 0.3).astype(np.float32)

    def f(x: np.ndarray) -> np.ndarray:
        return np.maximum(_mm(np.tanh(_mm(x.astype(np.float32), w1) + b1), w2) + b2, 0.0)

    return f


def generate(spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """Class structure, embeddings and per-split arrays of a synthetic benchmark."""
    rng = np.random.default_rng(spec.seed)
    C = spec.n_classes
    k, m, q = spec.semantic_dim, spec.private_dim, spec.nuisance_dim
    rv, ra = spec.video_rank, spec.audio_rank
    names = spec.class_names or [f"Class{c:03d}" for c in range(C)]
    # class codes: semantic part (grouped into superclasses) and private part
    group = rng.integers(spec.n_groups, size=C)
    centres = rng.standard_normal((spec.n_groups, k)) * spec.group_scale
    sem = (centres[group] + rng.standard_normal((C, k))) / np.sqrt(1.0 + spec.group_scale**2)
    priv = rng.standard_normal((C, m)) * spec.private_scale
    mu = np.concatenate([sem, priv], 1)  # [C, k+m]
    # text: a linear image of the semantic part plus the text's own part
    w_text = rng.standard_normal((k, spec.text_dim)) / np.sqrt(k)
    text = _mm(sem, w_text) + spec.text_noise * rng.standard_normal((C, spec.text_dim))
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    # each modality sees its own lower-rank view of the class code
    v_view = rng.standard_normal((k + m, rv)) / np.sqrt(k + m)
    a_view = rng.standard_normal((k + m, ra)) / np.sqrt(k + m)
    f_v = _random_map(rng, rv + q, spec.video_dim)
    f_a = _random_map(rng, ra + q, spec.audio_dim)

    seen = np.arange(spec.n_seen)
    val_unseen = np.arange(spec.n_seen, spec.n_seen + spec.n_val_unseen)
    test_unseen = np.arange(spec.n_seen + spec.n_val_unseen, C)

    def features(f, x: np.ndarray, nuis: np.ndarray, lens: np.ndarray | None) -> np.ndarray:
        if lens is None:
            return f(np.concatenate([x, nuis], 1)).astype(np.float32)
        T, d = spec.temporal_len[1], x.shape[1]
        steps = x[:, None, :] + rng.standard_normal((len(x), T, d)) * spec.step_noise
        steps = np.concatenate([steps, np.broadcast_to(nuis[:, None, :], (len(x), T, q))], 2)
        out = f(steps.reshape(len(x) * T, d + q)).reshape(len(x), T, -1)
        out[np.arange(T)[None, :] >= lens[:, None]] = 0.0
        return out.astype(np.float32)

    def videos(classes: np.ndarray, per_class: int, tag: str):
        labels = np.repeat(classes, per_class)
        n = labels.size
        nuis = rng.standard_normal((n, q)) * spec.nuisance_scale
        x_v = _mm(mu[labels], v_view) + spec.video_noise * rng.standard_normal((n, rv))
        off = rng.random(n) < spec.offscreen
        background = np.concatenate([rng.standard_normal((n, k)), rng.standard_normal((n, m)) * spec.private_scale], 1)
        x_a = _mm(np.where(off[:, None], background, mu[labels]), a_view) + spec.audio_noise * rng.standard_normal((n, ra))
        ids = np.array([f"v_{names[c]}_{tag}{i:04d}" for c, i in zip(labels, np.tile(np.arange(per_class), classes.size))])
        a_len = v_len = None
        if spec.temporal_len:
            lo, hi = spec.temporal_len
            a_len = rng.integers(lo, hi + 1, n)
            v_len = rng.integers(lo, hi + 1, n)
        audio = features(f_a, x_a, nuis, a_len)
        video = features(f_v, x_v, nuis, v_len)
        return audio, video, labels.astype(np.int64), ids, a_len, v_len

    parts = {
        "stage_1_train": [videos(seen, spec.train_per_class, "tr")],
        "stage_1_val_seen": [videos(seen, spec.val_seen_per_class, "vs")],
        "stage_1_val_unseen": [videos(val_unseen, spec.val_unseen_per_class, "vu")],
        "stage_2_test_seen": [
            videos(seen, spec.test_seen_per_class, "ts"),
            videos(val_unseen, spec.test_seen_per_class, "ts"),
        ],
        "stage_2_test_unseen": [videos(test_unseen, spec.test_unseen_per_class, "tu")],
    }
    splits = {}
    for name in STORED_SPLITS:
        a, v, y, ids, al, vl = zip(*parts[name])
        splits[name] = Split(
            name=name,
            audio=np.concatenate(a),
            video=np.concatenate(v),
            labels=np.concatenate(y),
            video_ids=np.concatenate(ids),
            audio_len=np.concatenate(al) if spec.temporal_len else None,
            video_len=np.concatenate(vl) if spec.temporal_len else None,
        )
    return {"class_names": names, "embeddings": text, "splits": splits}


# The default budget of the synthetic benchmarks. One `avbench run` on `synthetic` takes
# (CPU seconds, one thread) about 20-30 for ALE/SJE/DeViSE/APN, 50 for ClipClap/MFT,
# 100-130 for AVGZSLNet/EZ-AVGZL/AVCA and about 6 minutes for f-VAEGAN-D2; the cost is the
# methods' own (the data takes well under a second). --epochs / --set override it.
SYNTHETIC_BUDGET = {"epochs": 10, "batches_per_epoch": 100}


# Built-in variants: the main (averaged) shape, the CLIP/CLAP shape (both with
# ActivityNet-GZSL's classes) and per-second sequences (UCF-GZSL's classes, to stay small).
VARIANTS = {
    "synthetic": ("main", SyntheticSpec()),
    "synthetic-clipclap": ("clipclap", SyntheticSpec(audio_dim=1024, video_dim=512, text_dim=1536)),
    "synthetic-temporal": (
        "temporal-main",
        SyntheticSpec(n_seen=30, n_val_unseen=12, n_test_unseen=9, train_per_class=50, val_seen_per_class=8,
                      val_unseen_per_class=60, test_seen_per_class=10, test_unseen_per_class=60, temporal_len=(3, 8)),
    ),
}


def synthetic_benchmark(spec: SyntheticSpec | None = None, variant: str = "synthetic") -> Benchmark:
    """A built-in benchmark. Each process generates a (spec, variant) once (0.6-0.8 CPU seconds)
    and hands out copies sharing its arrays (never written to, as no code writes a split's arrays):
    a sweep's worker loads the benchmark for every trial and final it runs, a suite's driver once per
    sweep."""
    spec = spec or VARIANTS[variant][1]
    # class_names is not part of a spec's equality: a spec naming its classes is built afresh
    bench = copy.copy(_built(spec, variant) if spec.class_names is None else _built.__wrapped__(spec, variant))
    bench.loaded = []  # per copy: which splits this run read (trials must never read the test splits)
    bench.budget = dict(SYNTHETIC_BUDGET)
    bench.extra = dict(bench.extra)
    return bench


@functools.lru_cache(maxsize=4)
def _built(spec: SyntheticSpec, variant: str) -> Benchmark:
    g = generate(spec)
    return Benchmark.from_splits(
        name=variant,
        dataset="synthetic",
        features=VARIANTS[variant][0],
        class_names=g["class_names"],
        embeddings=g["embeddings"],
        legacy_embeddings=None,
        splits=g["splits"],
        source=f"synthetic seed={spec.seed}",
        extra={"max_len": "0"} if spec.temporal_len else None,  # generated sequences: whole
    )


def write_avca_layout(
    root: str | Path,
    folder: str = "UCF",
    spec: SyntheticSpec = SyntheticSpec(),
    features: str = "main_features",
    text_file: str = "word_embeddings_ucf_normed.npy",
    cleaned_names: dict[str, str] | None = None,
    split_lists: dict[str, list[str]] | None = None,
    embeddings: dict[str, np.ndarray] | None = None,
    clipclap: bool = False,
) -> Path:
    """Write a synthetic benchmark in the public AVCA-GZSL folder layout.

    ``clipclap=True`` writes the ClipClap variant instead: one vector per video in
    ``cls_features_non_averaged/*.pkl`` and the class embeddings split into a CLIP
    (first 512) and a CLAP (rest) text file. With a temporal spec, per-class pickles of
    sequences are written (pass ``features="main_features_non_averaged"``).

    ``cleaned_names`` (original -> cleaned) and ``embeddings`` (cleaned -> vector)
    default to the generator's own; pass the real ones to build a benchmark with a
    real class structure. ``split_lists`` maps split -> class names and, when
    given, decides which class gets which role.
    """
    import h5py

    if clipclap:
        features = "cls_features_non_averaged"
    g = generate(spec)
    names = g["class_names"]
    cleaned = cleaned_names or {n: n.replace("Class", "class ") for n in names}
    emb = embeddings or {cleaned[n]: g["embeddings"][i] for i, n in enumerate(names)}
    base = Path(root) / folder
    cs = base / "class-split"
    split_dir = cs / ("main_split" if features.startswith("main") else "cls_split")
    split_dir.mkdir(parents=True, exist_ok=True)
    (cs / "all_class.txt").write_text("\n".join(names) + "\n")
    csv_name = {"UCF": "ucf", "ActivityNet": "activitynet", "VGGSound": "vggsound"}.get(folder, folder.lower())
    csv_file = cs / f"{csv_name}_w2v_class_names.csv"
    if clipclap and csv_name == "ucf":
        csv_file = cs / "ucf_clip_class_names.csv"
    with open(csv_file, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["original", "manual", "clip_class_name"] if csv_file.name == "ucf_clip_class_names.csv"
                   else ["original", "manual"])
        for n in names:
            w.writerow([n, cleaned[n], cleaned[n]] if csv_file.name == "ucf_clip_class_names.csv" else [n, cleaned[n]])
    feat = base / "features" / features
    split_classes = {k: np.unique(g["splits"][k].labels) for k in STORED_SPLITS}
    split_classes["stage_2_train"] = np.unique(
        np.concatenate([split_classes[k] for k in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen")])
    )
    for name, classes in split_classes.items():
        listed = split_lists[name] if split_lists else [names[c] for c in classes]
        (split_dir / f"{name}.txt").write_text("\n".join(listed) + "\n")
    for name in STORED_SPLITS:
        s = g["splits"][name]
        for modality, x, lens in (("audio", s.audio, s.audio_len), ("video", s.video, s.video_len)):
            d = feat / modality / name
            d.mkdir(parents=True, exist_ok=True)
            for c in np.unique(s.labels):
                m = s.labels == c
                if clipclap:  # the ClipClap layout: one vector per video in the pickle format
                    with open(d / f"{names[c]}.pkl", "wb") as fh:
                        pickle.dump({"features": list(x[m]), "video_names": list(s.video_ids[m]),
                                     "fps": [25] * int(m.sum())}, fh)
                    continue
                if s.temporal:  # the TCAF layout: a pickle of variable-length sequences per class
                    seqs = [x.sequence(i) for i in np.flatnonzero(m)]
                    with open(d / f"{names[c]}.pkl", "wb") as fh:
                        pickle.dump({"features": seqs, "video_names": list(s.video_ids[m]), "fps": 25}, fh)
                    continue
                with h5py.File(d / f"{names[c]}.h5", "w") as f:
                    f.create_dataset("data", data=x[m])
                    f.create_dataset("video_urls", data=np.array([i.encode() for i in s.video_ids[m]], dtype="S80"))
    text = feat / "text"
    text.mkdir(parents=True, exist_ok=True)
    if clipclap:
        stem = {"ucf": "ucf", "activitynet": "activitynet", "vggsound": "vggsound"}.get(csv_name, csv_name)
        np.save(text / f"word_embeddings_{stem}_normed.npy", np.array({k: v[:512] for k, v in emb.items()}, dtype=object))
        np.save(text / f"wavcaps_word_embeddings_{stem}_normed.npy",
                np.array({k: v[512:] for k, v in emb.items()}, dtype=object))
        return base
    np.save(text / text_file, np.array(emb, dtype=object), allow_pickle=True)
    return base
