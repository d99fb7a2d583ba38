"""A built-in synthetic AV-GZSL benchmark: no files, no network.

Each class ``c`` has a latent semantic code ``z_c``. Its text embedding is a fixed
random linear image of ``z_c`` (L2-normalised, 300-d, like the fastText vectors of
the real benchmarks). A video of class ``c`` has

    audio = f_a(z_c + s·δ_c^a + n·ε) ,   video = f_v(z_c + s·δ_c^v + n·ε')

where ``f_a``, ``f_v`` are fixed random two-layer non-linear maps shared by all
classes, ``δ_c`` is a class-specific offset the text does not explain and ``ε`` is
per-video noise. Because the maps are shared, what is learnt on seen classes
transfers to unseen ones; because of ``δ_c`` and ``ε`` it is not trivial.

The default class structure is shaped like UCF-GZSL: 30 seen classes, 12
validation-unseen classes and 9 test-unseen classes, with hundreds of videos per
class. :func:`write_avca_layout` writes a benchmark in the public AVCA-GZSL
folder layout, so tests can run ``avbench data import`` end to end.
"""

from __future__ import annotations

import csv
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avbench.data.benchmark import STORED_SPLITS, Benchmark, Split


@dataclass(frozen=True)
class SyntheticSpec:
    n_seen: int = 30
    n_val_unseen: int = 12
    n_test_unseen: int = 9
    train_per_class: int = 100
    val_seen_per_class: int = 12
    val_unseen_per_class: int = 120
    test_seen_per_class: int = 18
    test_unseen_per_class: int = 140
    audio_dim: int = 512
    video_dim: int = 512
    text_dim: int = 300
    latent_dim: int = 8
    class_noise: float = 0.3
    video_noise: float = 0.8
    seed: int = 1234
    # temporal variant: each video is a sequence of T ~ U[lo, hi] per-second features
    # (zero-padded to hi), each step drawn around the video's own latent point
    temporal_len: tuple[int, int] | None = None
    step_noise: float = 0.5
    class_names: list[str] | None = field(default=None, compare=False)

    @property
    def n_classes(self) -> int:
        return self.n_seen + self.n_val_unseen + self.n_test_unseen


def _random_map(rng: np.random.Generator, d_in: int, d_out: int, hidden: int = 256):
    w1 = rng.standard_normal((d_in, hidden)) / np.sqrt(d_in)
    b1 = rng.standard_normal(hidden) * 0.3
    w2 = rng.standard_normal((hidden, d_out)) / np.sqrt(hidden)

    def f(x: np.ndarray) -> np.ndarray:
        return np.maximum(np.tanh(x @ w1 + b1) @ w2, 0.0) + 0.05 * (x @ w1[:, : min(hidden, d_out)]).mean(1, keepdims=True)

    return f


def generate(spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """Class structure, embeddings and per-split arrays of a synthetic benchmark."""
    rng = np.random.default_rng(spec.seed)
    C = spec.n_classes
    names = spec.class_names or [f"Class{c:03d}" for c in range(C)]
    z = rng.standard_normal((C, spec.latent_dim))
    w_text = rng.standard_normal((spec.latent_dim, spec.text_dim))
    text = z @ w_text + 0.3 * rng.standard_normal((C, spec.text_dim)) * np.sqrt(spec.latent_dim)
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    f_a = _random_map(rng, spec.latent_dim, spec.audio_dim)
    f_v = _random_map(rng, spec.latent_dim, spec.video_dim)
    delta_a = rng.standard_normal((C, spec.latent_dim)) * spec.class_noise
    delta_v = rng.standard_normal((C, spec.latent_dim)) * spec.class_noise

    seen = np.arange(spec.n_seen)
    val_unseen = np.arange(spec.n_seen, spec.n_seen + spec.n_val_unseen)
    test_unseen = np.arange(spec.n_seen + spec.n_val_unseen, C)

    def sequences(f, centre: np.ndarray, lens: np.ndarray) -> np.ndarray:
        T = spec.temporal_len[1]
        steps = centre[:, None, :] + rng.standard_normal((len(centre), T, spec.latent_dim)) * spec.step_noise
        x = f(steps.reshape(-1, spec.latent_dim)).reshape(len(centre), T, -1)
        x[np.arange(T)[None, :] >= lens[:, None]] = 0.0
        return x.astype(np.float32)

    def videos(classes: np.ndarray, per_class: int, tag: str):
        labels = np.repeat(classes, per_class)
        eps_a = rng.standard_normal((labels.size, spec.latent_dim)) * spec.video_noise
        eps_v = rng.standard_normal((labels.size, spec.latent_dim)) * spec.video_noise
        ids = np.array([f"v_{names[c]}_{tag}{i:04d}" for c, i in zip(labels, np.tile(np.arange(per_class), classes.size))])
        if spec.temporal_len:
            lo, hi = spec.temporal_len
            a_len = rng.integers(lo, hi + 1, labels.size)
            v_len = rng.integers(lo, hi + 1, labels.size)
            audio = sequences(f_a, z[labels] + delta_a[labels] + eps_a, a_len)
            video = sequences(f_v, z[labels] + delta_v[labels] + eps_v, v_len)
            return audio, video, labels.astype(np.int64), ids, a_len, v_len
        audio = f_a(z[labels] + delta_a[labels] + eps_a).astype(np.float32)
        video = f_v(z[labels] + delta_v[labels] + eps_v).astype(np.float32)
        return audio, video, labels.astype(np.int64), ids, None, None

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


# The synthetic benchmark is learnt in a few hundred steps; its default budget keeps
# `avbench run` to about a minute on a 2-core CPU. --epochs / --set override it.
SYNTHETIC_BUDGET = {"epochs": 10, "batches_per_epoch": 100}


# Built-in variants: the main (averaged) shape, the CLIP/CLAP shape and per-second sequences.
VARIANTS = {
    "synthetic": ("main", SyntheticSpec()),
    "synthetic-clipclap": ("clipclap", SyntheticSpec(audio_dim=1024, video_dim=512, text_dim=1536)),
    "synthetic-temporal": (
        "temporal-main",
        SyntheticSpec(train_per_class=50, val_seen_per_class=8, val_unseen_per_class=60, test_seen_per_class=10,
                      test_unseen_per_class=60, temporal_len=(3, 8)),
    ),
}


def synthetic_benchmark(spec: SyntheticSpec | None = None, variant: str = "synthetic") -> Benchmark:
    features, default = VARIANTS[variant]
    spec = spec or default
    g = generate(spec)
    bench = Benchmark.from_splits(
        name=variant,
        dataset="synthetic",
        features=features,
        class_names=g["class_names"],
        embeddings=g["embeddings"],
        legacy_embeddings=None,
        splits=g["splits"],
        source=f"synthetic seed={spec.seed}",
    )
    bench.budget = dict(SYNTHETIC_BUDGET)
    return bench


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
                    seqs = [x[i, : lens[i]] for i in np.flatnonzero(m)]
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
