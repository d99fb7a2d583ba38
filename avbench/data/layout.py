"""Import the public AVCA-GZSL folder layout into one avbench benchmark file.

Layout read (FIELD_NOTES §4)::

    <root>/<UCF|ActivityNet|VGGSound>/
        class-split/all_class.txt
        class-split/<ucf|activitynet|vggsound>_w2v_class_names.csv    original -> cleaned name
        class-split/<main_split|cls_split>/stage_*.txt                class names per split
        features/<main_features|cls_features>/<audio|video>/<split>/<Class>.h5   data [N, D], video_urls [N]
        features/<main_features|cls_features>/text/word_embeddings_<ucf|activity|vggsound>_normed.npy

Features stream into the benchmark file one class at a time (bounded memory); the
file appears only when everything was read and checked. A failed check is one
:class:`DataError` line naming the file and field, and leaves nothing behind.

Class ids follow the public code: position in the sorted original class names.
The class -> embedding matrix is built BY NAME (original name -> cleaned name via
the csv -> embedding), case-insensitively for UCF and ActivityNet. The public
code's order (embedding rows sorted by cleaned name, indexed by class id) is kept
beside it as the ``legacy`` order, used only on explicit request.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avbench.data.benchmark import STORED_SPLITS, SPLITS, Benchmark, Split
from avbench.data.ragged import Ragged, centre_window
from avbench.data.writer import BenchmarkWriter, Written
from avbench.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    key: str  # ucf | activitynet | vggsound
    folder: str  # folder name in the public layout
    csv_stem: str
    text_stem: str
    case_insensitive: bool
    title: str


DATASETS = {
    "ucf": DatasetInfo("ucf", "UCF", "ucf", "ucf", True, "UCF-GZSL (UCF101 classes)"),
    "activitynet": DatasetInfo("activitynet", "ActivityNet", "activitynet", "activity", True, "ActivityNet-GZSL"),
    "vggsound": DatasetInfo("vggsound", "VGGSound", "vggsound", "vggsound", False, "VGGSound-GZSL"),
}
FEATURES = {
    "main": ("main_features", "main_split"),
    "cls": ("cls_features", "cls_split"),
    # per-second sequences (TCAF): <Class>.pkl = {'features': [T_i x D arrays], 'video_names': [...], 'fps'}
    "temporal-main": ("main_features_non_averaged", "main_split"),
    "temporal-cls": ("cls_features_non_averaged", "cls_split"),
    # ClipClap: one CLIP (video, 512) and one CLAP (audio, 1024) vector per video, in pickles
    # shaped like the temporal ones; class embeddings = CLIP text ‖ CLAP text (1536)
    "clipclap": ("cls_features_non_averaged", "cls_split"),
}
# Sequences longer than this are centre-cropped at import (TCAF crops ActivityNet's long
# videos to 300 steps at test time; UCF and VGGSound clips are kept whole). Sequences are
# stored without padding (benchmark format 2).
DEFAULT_MAX_LEN = {"activitynet": 300}

# Splits whose videos must not overlap (stage_2_train is their union and is derived).
DISJOINT = STORED_SPLITS


def dataset_root(root: Path, info: DatasetInfo) -> Path:
    """``root`` may be the downloaded folder holding UCF/... or the dataset's own folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (expected the folder holding {info.folder}/ or {info.folder}/ itself)")
    if (root / "class-split").is_dir():
        return root
    for cand in root.iterdir():
        if cand.is_dir() and cand.name.lower() == info.folder.lower() and (cand / "class-split").is_dir():
            return cand
    raise DataError(f"{root}: no {info.folder}/class-split folder here (expected the AVCA-GZSL layout, FIELD_NOTES §4)")


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def read_name_map(path: Path, fold, column: str = "manual") -> dict[str, str]:
    """original class name (folded) -> cleaned name, from the *_w2v_class_names.csv."""
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        for need in ("original", column):
            if need not in fields:
                raise DataError(f"{path}: no column {need!r} (columns: {', '.join(fields)})")
        return {fold(r["original"].strip()): r[column].strip() for r in reader}


def read_embeddings(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        raw = np.load(path, allow_pickle=True)
        d = raw.item() if isinstance(raw, np.ndarray) else raw
    except Exception as e:
        raise DataError(f"{path}: not a pickled dict of class embeddings ({e})") from None
    if not isinstance(d, dict) or not d:
        raise DataError(f"{path}: expected a non-empty dict name -> vector, got {type(d).__name__}")
    widths = {}
    out = {}
    for k, v in d.items():
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        widths.setdefault(v.shape[0], str(k))
        if not np.all(np.isfinite(v)):
            raise DataError(f"{path}: embedding of {k!r} has NaN/inf values")
        out[str(k)] = v
    if len(widths) > 1:
        desc = ", ".join(f"{w} (e.g. {k!r})" for w, k in widths.items())
        raise DataError(f"{path}: embedding width mismatch: widths {desc}; expected one width")
    return out


def build_embedding_matrices(
    class_names: list[str],
    name_map: dict[str, str],
    emb: dict[str, np.ndarray],
    fold,
    csv_path: Path,
    emb_path: Path,
) -> tuple[np.ndarray, np.ndarray]:
    """(by-name matrix, legacy matrix); rows follow ``class_names`` (class ids)."""
    emb_folded = {}
    for k, v in emb.items():
        emb_folded.setdefault(fold(k), v)
    unresolved = []
    rows = []
    for c in class_names:
        cleaned = name_map.get(fold(c))
        if cleaned is None:
            unresolved.append(f"{c} (not in {csv_path.name})")
            continue
        v = emb.get(cleaned)
        if v is None:
            v = emb_folded.get(fold(cleaned))
        if v is None:
            unresolved.append(f"{c} -> {cleaned!r} (not in {emb_path.name})")
            continue
        rows.append(v)
    if unresolved:
        raise DataError(f"{emb_path}: {len(unresolved)} class(es) have no embedding: {'; '.join(unresolved)}")
    by_name = np.stack(rows).astype(np.float32)
    # The public code: rows of the dict sorted by key (cleaned name), row i given to class id i.
    legacy_rows = [emb[k] for k in sorted(emb)]
    if len(legacy_rows) < len(class_names):
        raise DataError(f"{emb_path}: {len(legacy_rows)} embeddings for {len(class_names)} classes")
    legacy = np.stack(legacy_rows[: len(class_names)]).astype(np.float32)
    return by_name, legacy


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            for key in ("data", "video_urls"):
                if key not in f:
                    raise DataError(f"{path}: no dataset {key!r} (expected 'data' and 'video_urls')")
            data = np.asarray(f["data"][()], dtype=np.float32)
            urls = f["video_urls"][()]
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
    if data.ndim != 2:
        raise DataError(f"{path}: field 'data' has shape {data.shape}, expected [N, D]")
    urls = np.array([u.decode() if isinstance(u, bytes) else str(u) for u in np.atleast_1d(urls)])
    if len(urls) != data.shape[0]:
        raise DataError(f"{path}: 'video_urls' has {len(urls)} entries but 'data' has {data.shape[0]} rows")
    if data.shape[0] == 0:
        raise DataError(f"{path}: empty class (0 videos)")
    if not np.all(np.isfinite(data)):
        bad = int(np.argwhere(~np.isfinite(data))[0][0])
        raise DataError(f"{path}: field 'data' has NaN/inf values (first at row {bad}, video '{urls[bad]}')")
    return data, urls


def read_split_lists(split_dir: Path, class_names, class_id, fold, all_path: Path) -> dict[str, list[int]]:
    """Class ids listed in each class-split/<split>/stage_*.txt."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: missing split folder")
    listed: dict[str, list[int]] = {}
    for name in SPLITS:
        path = split_dir / f"{name}.txt"
        if name == "stage_2_train" and not path.exists():
            continue  # derived; the reference never reads it
        ids = []
        for c in _read_lines(path):
            if fold(c) not in class_id:
                raise DataError(f"{path}: class {c!r} is not in {all_path.name}")
            ids.append(class_id[fold(c)])
        if not ids:
            raise DataError(f"{path}: no classes listed")
        listed[name] = ids
    return listed


def check_class_roles(listed: dict[str, list[int]], class_names, split_dir: Path) -> None:
    """Unseen classes never in a training split, seen/unseen parts disjoint."""
    train1 = set(listed["stage_1_train"])
    for c in set(listed["stage_1_val_unseen"]) & train1:
        raise DataError(
            f"{split_dir / 'stage_1_val_unseen.txt'}: unseen class {class_names[c]!r} is also in stage_1_train.txt"
        )
    train2 = train1 | set(listed["stage_1_val_seen"]) | set(listed["stage_1_val_unseen"])
    for c in set(listed["stage_2_test_unseen"]) & train2:
        raise DataError(
            f"{split_dir / 'stage_2_test_unseen.txt'}: unseen class {class_names[c]!r} is in a stage-2 training split"
        )
    for c in set(listed["stage_1_val_seen"]) - train1:
        raise DataError(f"{split_dir / 'stage_1_val_seen.txt'}: seen class {class_names[c]!r} is not in stage_1_train.txt")
    for c in set(listed["stage_1_val_unseen"]) & set(listed["stage_1_val_seen"]):
        raise DataError(
            f"{split_dir / 'stage_1_val_unseen.txt'}: unseen class {class_names[c]!r} is also in stage_1_val_seen.txt"
        )
    for c in set(listed["stage_2_test_unseen"]) & set(listed["stage_2_test_seen"]):
        raise DataError(
            f"{split_dir / 'stage_2_test_unseen.txt'}: unseen class {class_names[c]!r} is also in stage_2_test_seen.txt"
        )
    if "stage_2_train" in listed and set(listed["stage_2_train"]) != train2:
        diff = sorted(class_names[c] for c in set(listed["stage_2_train"]) ^ train2)
        raise DataError(
            f"{split_dir / 'stage_2_train.txt'}: classes differ from stage_1_train ∪ val_seen ∪ val_unseen "
            f"(e.g. {', '.join(map(repr, diff[:3]))}); stage 2 trains on those three splits"
        )


def _read_pkl(path: Path, vectors: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """A temporal class file: a list of [T_i, D] sequences (or [D] vectors) and their video names."""
    import pickle

    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh)
    except Exception as e:
        raise DataError(f"{path}: not a readable pickle ({e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a dict with 'features' and 'video_names', got {type(d).__name__}")
    for key in ("features", "video_names"):
        if key not in d:
            raise DataError(f"{path}: no field {key!r} (expected 'features' and 'video_names')")
    seqs = [np.asarray(x, dtype=np.float32) for x in d["features"]]
    urls = np.array([u.decode() if isinstance(u, bytes) else str(u) for u in d["video_names"]])
    if len(urls) != len(seqs):
        raise DataError(f"{path}: 'video_names' has {len(urls)} entries but 'features' has {len(seqs)} sequences")
    if not seqs:
        raise DataError(f"{path}: empty class (0 videos)")
    for i, x in enumerate(seqs):
        if vectors:
            if x.ndim == 2 and x.shape[0] == 1:
                seqs[i] = x = x[0]
            if x.ndim != 1:
                raise DataError(f"{path}: field 'features'[{i}] (video '{urls[i]}') has shape {x.shape}, expected [D]")
            x = x[None]
        elif x.ndim != 2 or x.shape[0] == 0:
            raise DataError(f"{path}: field 'features'[{i}] (video '{urls[i]}') has shape {x.shape}, expected [T>0, D]")
        if x.shape[-1] != seqs[0].shape[-1]:
            raise DataError(f"{path}: field 'features'[{i}] is {x.shape[-1]}-d but [0] is {seqs[0].shape[-1]}-d")
        if not np.all(np.isfinite(x)):
            raise DataError(f"{path}: field 'features'[{i}] (video '{urls[i]}') has NaN/inf values")
    return seqs, urls


def _read_vectors_pkl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ClipClap class file: the temporal pickle format holding one vector per video."""
    seqs, urls = _read_pkl(path, vectors=True)
    return np.stack(seqs), urls


def concat_embeddings(clip: dict, clap: dict, path: Path) -> dict[str, np.ndarray]:
    """CLIP text ‖ CLAP text per class name (both dicts must hold the same names)."""
    missing = sorted(set(clip) ^ set(clap))
    if missing:
        raise DataError(f"{path}: CLIP and CLAP text embeddings name different classes (e.g. {missing[:3]})")
    return {k: np.concatenate([clip[k], clap[k]]).astype(np.float32) for k in clip}


def crop_length(max_len: int | None, default: int | None) -> int | None:
    """The centre-crop length of ``--max-len``: ``default`` when not given, None (no crop) for 0."""
    if max_len is None:
        return default
    if int(max_len) < 0:
        raise DataError(f"--max-len {max_len}: expected a number of steps (0: keep whole sequences)")
    return int(max_len) or None


def crop_record(max_len: int | None) -> str:
    """How a benchmark file records the crop of its per-second sequences (attribute ``x_max_len``):
    the number of steps when the crop cut some sequence, else "0" (every sequence whole, as
    ``--max-len 0`` would have kept them: the same data)."""
    return str(int(max_len or 0))


def crop(x: np.ndarray, max_len: int | None) -> np.ndarray:
    """A sequence longer than ``max_len`` steps, centre-cropped to it (as TCAF crops at test time)."""
    lo, hi = centre_window(len(x), max_len)
    return x if (lo, hi) == (0, len(x)) else x[lo:hi]


@dataclass
class LayoutInfo:
    """What an import read besides the features: classes, embeddings, where from."""

    name: str
    dataset: str
    features: str
    class_names: list[str]
    embeddings: np.ndarray
    legacy: np.ndarray
    source: str
    temporal: bool
    max_len: int | None = None  # the centre crop that cut some per-second sequence (None: all kept whole)

    @property
    def extra(self) -> dict[str, str]:
        """The file attributes of an import: a per-second one records its crop (see ``crop_record``)."""
        return {"max_len": crop_record(self.max_len)} if self.temporal else {}


def stream_layout(
    root: str | os.PathLike, dataset: str, features: str, sink, progress=None, max_len: int | None = None
) -> LayoutInfo:
    """Read and validate one dataset variant, handing its features to ``sink`` one class at a time.

    ``sink(split, audio, video, labels, ids)`` receives [n, D] arrays (averaged
    features) or lists of [T_i, D] sequences (temporal, centre-cropped to ``max_len``).
    Class lists, names and embeddings are checked before the first class is read; a
    class file is checked when it is read, so a caller must discard what it received
    when this raises (:class:`~avbench.data.writer.BenchmarkWriter` does).
    """
    if dataset not in DATASETS:
        raise DataError(f"dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    if features not in FEATURES:
        raise DataError(f"features {features!r}: expected one of {', '.join(FEATURES)}")
    info = DATASETS[dataset]
    feat_dir, split_dir_name = FEATURES[features]
    temporal = features.startswith("temporal-")
    ext = ".pkl" if temporal or features == "clipclap" else ".h5"
    max_len = crop_length(max_len, DEFAULT_MAX_LEN.get(dataset))
    cut = False  # whether the crop shortened any sequence (recorded in the file)
    base = dataset_root(Path(root), info)
    _listing.cache_clear()
    fold = str.lower if info.case_insensitive else (lambda s: s)
    cs = base / "class-split"

    all_path = cs / "all_class.txt"
    class_names = sorted(_read_lines(all_path))  # class id = position in sorted original names
    class_id: dict[str, int] = {}
    for i, c in enumerate(class_names):
        if fold(c) in class_id:
            raise DataError(f"{all_path}: class {c!r} listed twice")
        class_id[fold(c)] = i

    split_dir = cs / split_dir_name
    listed = read_split_lists(split_dir, class_names, class_id, fold, all_path)
    check_class_roles(listed, class_names, split_dir)

    clipclap = features == "clipclap"
    text_dir = base / "features" / feat_dir / "text"
    if clipclap:  # UCF keys the CLIP/CLAP dicts by its own cleaned names; the others by AVCA's
        csv_path = cs / ("ucf_clip_class_names.csv" if dataset == "ucf" else f"{info.csv_stem}_w2v_class_names.csv")
        name_map = read_name_map(csv_path, fold, "clip_class_name" if dataset == "ucf" else "manual")
        emb_path = text_dir / f"word_embeddings_{dataset}_normed.npy"
        emb = concat_embeddings(read_embeddings(emb_path), read_embeddings(text_dir / f"wavcaps_word_embeddings_{dataset}_normed.npy"),
                                emb_path)
    else:
        csv_path = cs / f"{info.csv_stem}_w2v_class_names.csv"
        name_map = read_name_map(csv_path, fold)
        emb_path = text_dir / f"word_embeddings_{info.text_stem}_normed.npy"
        emb = read_embeddings(emb_path)
    by_name, legacy = build_embedding_matrices(class_names, name_map, emb, fold, csv_path, emb_path)

    # every class file must exist before the first is read
    files: dict[tuple[str, int, str], Path] = {}
    for name in STORED_SPLITS:
        for modality in ("audio", "video"):
            folder = base / "features" / feat_dir / modality / name
            if not folder.is_dir():
                raise DataError(f"{folder}: missing feature folder")
            for c in sorted(set(listed[name])):
                files[name, c, modality] = _class_file(folder, class_names[c], fold, ext)

    widths: dict[str, tuple[int, Path]] = {}
    owner: dict[str, tuple] = {}
    for name in STORED_SPLITS:
        for c in sorted(set(listed[name])):
            per_mod = {}
            for modality in ("audio", "video"):
                path = files[name, c, modality]
                if clipclap:
                    data, urls = _read_vectors_pkl(path)
                else:
                    data, urls = _read_pkl(path) if temporal else _read_h5(path)
                width = data[0].shape[1] if temporal else data.shape[1]
                w = widths.setdefault(modality, (width, path))
                if width != w[0]:
                    field = "features" if temporal else "data"
                    raise DataError(
                        f"{path}: field '{field}' is {width}-d but {w[1]} is {w[0]}-d ({modality} widths must agree)"
                    )
                per_mod[modality] = (data, urls, path)
            (a, ua, pa), (v, uv, pv) = per_mod["audio"], per_mod["video"]
            if len(ua) != len(uv) or set(ua) != set(uv):
                only = sorted(set(ua) ^ set(uv))[:3]
                raise DataError(
                    f"{pv}: 'video_urls' disagree with {pa} ({len(uv)} vs {len(ua)} videos; e.g. {', '.join(only) or 'duplicates'})"
                )
            if len(set(ua)) != len(ua):
                raise DataError(f"{pa}: field 'video_urls' lists a video twice")
            if not np.array_equal(ua, uv):  # same videos, other order: align video to audio
                pos = {u: i for i, u in enumerate(uv)}
                v = [v[pos[u]] for u in ua] if temporal else v[[pos[u] for u in ua]]
            for u in ua:
                prev = owner.setdefault(str(u), (name, c))
                if prev[0] != name:
                    raise DataError(f"{pa}: video '{u}' is in both {prev[0]} and {name} (these splits must be disjoint)")
                if prev[1] != c:
                    raise DataError(
                        f"{pa}: video '{u}' is also listed for class {class_names[prev[1]]!r} in {name}"
                    )
            if temporal:
                cut = cut or any(max_len is not None and len(x) > max_len for x in (*a, *v))
                a, v = [crop(x, max_len) for x in a], [crop(x, max_len) for x in v]
            sink(name, a, v, np.full(len(ua), c, dtype=np.int64), ua)
        if progress is not None:
            progress(name)
    return LayoutInfo(f"{dataset}-{features}", dataset, features, class_names, by_name, legacy, str(base), temporal,
                      max_len if temporal and cut else None)


def import_layout(
    root: str | os.PathLike, dataset: str, features: str = "main", progress=None, max_len: int | None = None,
    dtype: str = "float32",
) -> Benchmark:
    """Read and validate one dataset variant; return it as an in-memory Benchmark."""
    parts: dict[str, dict[str, list]] = {s: {"audio": [], "video": [], "labels": [], "ids": []} for s in STORED_SPLITS}

    def collect(split, a, v, labels, ids):
        p = parts[split]
        if isinstance(a, list):
            p["audio"] += a
            p["video"] += v
        else:
            p["audio"].append(a)
            p["video"].append(v)
        p["labels"].append(labels)
        p["ids"].append(ids)

    info = stream_layout(root, dataset, features, collect, progress, max_len)
    join = (lambda xs: Ragged.from_list(xs)) if info.temporal else np.concatenate
    splits = {
        s: Split(name=s, audio=join(p["audio"]), video=join(p["video"]), labels=np.concatenate(p["labels"]),
                 video_ids=np.concatenate(p["ids"]))
        for s, p in parts.items()
    }
    return Benchmark.from_splits(
        name=info.name, dataset=dataset, features=features, class_names=info.class_names,
        embeddings=info.embeddings, legacy_embeddings=info.legacy, splits=splits, source=info.source, dtype=dtype,
        extra=info.extra,
    )


def import_to_file(
    root: str | os.PathLike, dataset: str, features: str, path: str | os.PathLike, *, dtype: str = "float32",
    progress=None, max_len: int | None = None,
) -> Written:
    """Stream one dataset variant into a benchmark file, one class in memory at a time.

    Nothing appears at ``path`` unless every file was read and checked; an error or an
    interruption removes what was written so far.
    """
    with BenchmarkWriter(path, dtype=dtype) as w:
        info = stream_layout(root, dataset, features, w.add, progress, max_len)
        return w.finish(name=info.name, dataset=dataset, features=features, class_names=info.class_names,
                        embeddings=info.embeddings, legacy_embeddings=info.legacy, source=info.source,
                        extra=info.extra)


@functools.lru_cache(maxsize=64)
def _listing(folder: Path, folded: bool, ext: str) -> dict[str, Path]:
    return {(p.stem.lower() if folded else p.stem): p for p in sorted(folder.glob(f"*{ext}"))}


def _class_file(folder: Path, class_name: str, fold, ext: str = ".h5") -> Path:
    path = folder / f"{class_name}{ext}"
    if path.is_file():
        return path
    folded = fold("A") == "a"
    hit = _listing(folder, folded, ext).get(fold(class_name))
    if hit is not None:
        return hit
    raise DataError(f"{path}: missing class file (class {class_name!r} is listed for this split)")
