"""Import and short-run cost of benchmarks with the real sizes of UCF-GZSL, ActivityNet-GZSL and VGGSound-GZSL.

For each case the script builds a synthetic benchmark in the public AVCA-GZSL layout
on disk, with the real class structure and videos per class and split, imports it
with ``avbench data import`` in a child process, then runs one stage-1 epoch plus
validation on it in another child process, and prints one JSON line per case (and
memory budget):

    {"case": ..., "dataset": ..., "features": ..., "dtype": ..., "fraction": ..., "videos": ...,
     "import_s": ..., "import_peak_rss_mb": ..., "file_mb": ..., "data_f32_mb": ..., "file_ratio": ...,
     "run_method": ..., "run_s": ..., "run_peak_rss_mb": ..., "data_access": ..., "targets": {...}, ...}

Cases: ``ucf-main``, ``ucf-cls``, ``activitynet-main``, ``activitynet-cls``,
``activitynet-temporal-main`` (float32), ``activitynet-temporal-main-float16``,
``vggsound-main``, ``vggsound-cls``.

Sizes. Classes per split and videos per class come from the benchmark metadata
(``../shared/data/avgzsl-metadata``, or ``--metadata``: the split class lists and the
per-video split tables ``stage_*.csv``); the layout written here links that folder's
``class-split`` and class embeddings in place (nothing is copied). VGGSound's
``stage_1_train.csv`` is not in the metadata: its 70,351 training videos (the AVCA-GZSL
paper's table, quoted in the metadata's README) are spread over the 138 seen classes
in proportion to their validation videos (the validation-seen split holds a fixed share
of every seen class). Without the metadata the sizes written below as constants are
used (same sources), with generated class names and embeddings.

Features: ``main`` audio 512-d / video 512-d (SeLaVi), ``cls`` audio 128-d / video
4096-d (VGGish / C3D), averaged, in per-class h5 files; ``temporal-main`` per-second
512 + 512-d sequences in per-class pickles (TCAF's layout), one length per video for
both modalities drawn from a gamma distribution (shape 3) with mean 117 s (the
ActivityNet v1.3 average), clipped to 1..755 s (the longest ActivityNet video); the
import centre-crops them to 300 steps (avbench's default for ActivityNet). Values are
cheap seeded random numbers with a class offset: the benchmark measures the platform,
not learning. Generation writes one class at a time (bounded memory).

Measured: ``import_s`` (wall seconds of the import process), ``import_peak_rss_mb``
(its peak RSS, ``wait4``), ``file_mb`` (the benchmark file), ``data_f32_mb`` (the
feature values as ragged float32 without padding: what format 2 stores) and
``file_ratio``; ``run_s`` / ``run_peak_rss_mb`` of a child process that opens the
benchmark and runs ``run_protocol(..., stage1_only=True)`` with 1 epoch of
``--batches`` batches (stage 1 of ``avbench run`` up to the epoch selection: one
training epoch and one validation pass over val seen ∪ val unseen; no stage 2, no
test), ``run_protocol_s`` the run itself without interpreter start and imports, and
``data_access`` (``resident`` or ``streamed``, chosen by avbench from the run's memory
budget: ``--memory-budget``, default ``auto``, avbench's automatic choice; several
budgets, comma-separated, give one run and one JSON line each, the import measured
once). Methods: AVCA on averaged features, TCAF on sequences (``--method`` to
override). Sizes in MiB; the issue's targets (defined for the full size, read with
GB = GiB) are reported as booleans in ``targets``, never asserted:

- ActivityNet temporal: import peak RSS <= 2 GB, TCAF run peak RSS <= 6 GB, file <= 1.1x
  the ragged float32 data (<= 0.6x with float16);
- VGGSound cls: imports no slower and no larger than before format 2 (25 s, 3.2 GB peak).

Usage: python benchmarks/scale.py [--fraction 1.0] [--cases C,...] [--datasets ucf,...] [--batches 20]
       [--threads 1] [--memory-budget auto[,SIZE...]] [--workdir DIR] [--keep] [--metadata DIR] [--no-run]
The data go to a temporary folder under ``--workdir`` (default: the system's temp dir),
removed at the end unless ``--keep``; a full-size run needs about 30 GB free there
(ActivityNet temporal: 9 GB of pickles, the import's spill files and a 9 GB benchmark).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avbench.data.benchmark import STORED_SPLITS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_METADATA = Path(os.environ.get("AVBENCH_SHARED", REPO.parent / "shared")) / "data" / "avgzsl-metadata"
MIB = 1 << 20
GIB = 1 << 30

# dataset -> metadata folder
FOLDERS = {"ucf": "UCF", "activitynet": "ActivityNet", "vggsound": "VGGSound"}
# features -> (audio dim, video dim, per-second sequences)
DIMS = {"main": (512, 512, False), "cls": (128, 4096, False), "temporal-main": (512, 512, True)}


@dataclass(frozen=True)
class Case:
    dataset: str
    features: str
    dtype: str = "float32"


CASES = {
    "ucf-main": Case("ucf", "main"),
    "ucf-cls": Case("ucf", "cls"),
    "activitynet-main": Case("activitynet", "main"),
    "activitynet-cls": Case("activitynet", "cls"),
    "activitynet-temporal-main": Case("activitynet", "temporal-main"),
    "activitynet-temporal-main-float16": Case("activitynet", "temporal-main", "float16"),
    "vggsound-main": Case("vggsound", "main"),
    "vggsound-cls": Case("vggsound", "cls"),
}

# Sequence lengths of ActivityNet (seconds = steps): gamma with this shape and mean, clipped.
LEN_MEAN, LEN_SHAPE, LEN_MAX = 117.0, 3.0, 755

# VGGSound-GZSL's stage_1_train videos: the AVCA-GZSL paper's table, as quoted in
# ../shared/data/avgzsl-metadata/README.md (its stage_1_train.csv is not in the metadata).
VGGSOUND_STAGE_1_TRAIN = 70351

# Fallback sizes when the metadata folder is missing: (classes, videos) per split of
# main_split, from the counts table of ../shared/data/avgzsl-metadata/README.md (AVCA-GZSL's
# per-video split tables; VGGSound's stage_1_train from the paper's table). cls_split differs
# only in stage_2_test_unseen: counted from the same tables (classes without cls features
# dropped).
FALLBACK_SIZES = {
    "ucf": {"stage_1_train": (30, 3174), "stage_1_val_seen": (30, 353), "stage_1_val_unseen": (12, 1467),
            "stage_2_test_seen": (42, 555), "stage_2_test_unseen": (9, 1267)},
    "activitynet": {"stage_1_train": (99, 9204), "stage_1_val_seen": (99, 1023), "stage_1_val_unseen": (51, 4307),
                    "stage_2_test_seen": (150, 1615), "stage_2_test_unseen": (50, 4199)},
    "vggsound": {"stage_1_train": (138, VGGSOUND_STAGE_1_TRAIN), "stage_1_val_seen": (138, 7817),
                 "stage_1_val_unseen": (69, 3102), "stage_2_test_seen": (207, 9032),
                 "stage_2_test_unseen": (69, 3450)},
}
FALLBACK_CLS_TEST_UNSEEN = {"ucf": (6, 845), "activitynet": (48, 4052), "vggsound": (64, 3200)}
# classes in all_class.txt (UCF101's 50 classes without sound and VGGSound's classes outside the
# benchmark are in no split)
FALLBACK_ALL_CLASSES = {"ucf": 101, "activitynet": 200, "vggsound": 309}


def log(msg: str) -> None:
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def _fold(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _spread(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders), each at least 1."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum()
    out = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - out), kind="stable")[: total - int(out.sum())]:
        out[i] += 1
    return [max(1, int(x)) for x in out]


# ---------------------------------------------------------------------------------------------
# class structure and videos per class
@dataclass
class Structure:
    dataset: str
    split_dir: str  # main_split | cls_split
    class_names: list[str]  # all_class.txt
    counts: dict[str, dict[str, int]]  # split -> class name (as in all_class.txt) -> videos
    source: str  # "metadata" or "constants"
    class_split: Path | None = None  # the real class-split folder (linked into the layout)
    text_file: Path | None = None  # the real embedding file (linked)
    split_lists: dict[str, list[str]] | None = None  # generated structure: split -> classes
    embeddings: dict[str, np.ndarray] | None = None  # generated structure: cleaned name -> vector

    def scaled(self, fraction: float) -> dict[str, dict[str, int]]:
        return {s: {c: max(1, int(round(n * fraction))) for c, n in per.items()} for s, per in self.counts.items()}


def real_structure(metadata: Path, dataset: str, split_dir: str) -> Structure:
    from avbench.data.layout import DATASETS

    info = DATASETS[dataset]
    cs = metadata / FOLDERS[dataset] / "class-split"
    names = _lines(cs / "all_class.txt")
    canon = {_fold(c): c for c in names}
    counts: dict[str, dict[str, int]] = {}
    for split in sorted(STORED_SPLITS, key=lambda s: s == "stage_1_train"):  # train last: it may need val_seen
        listed = [canon[_fold(c)] for c in _lines(cs / split_dir / f"{split}.txt")]
        table = cs / split_dir / f"{split}.csv"
        if table.is_file():
            with open(table, newline="") as fh:
                per: dict[str, int] = {}
                for row in csv.DictReader(fh):
                    key = _fold(row["label"])
                    per[key] = per.get(key, 0) + 1
            missing = [c for c in listed if _fold(c) not in per]
            if missing:
                raise SystemExit(f"{table}: no videos for listed class(es) {missing[:3]}")
            counts[split] = {c: per[_fold(c)] for c in listed}
        elif dataset == "vggsound" and split == "stage_1_train":
            val = counts["stage_1_val_seen"]
            counts[split] = dict(zip(listed, _spread(VGGSOUND_STAGE_1_TRAIN, [val[c] for c in listed])))
        else:
            raise SystemExit(f"{table}: missing per-video table")
    counts = {s: counts[s] for s in STORED_SPLITS}
    text = metadata / "w2v_features" / f"word_embeddings_{info.text_stem}_normed.npy"
    return Structure(dataset, split_dir, names, counts, "metadata", class_split=cs, text_file=text)


def fallback_structure(dataset: str, split_dir: str, seed: int) -> Structure:
    sizes = dict(FALLBACK_SIZES[dataset])
    if split_dir == "cls_split":
        sizes["stage_2_test_unseen"] = FALLBACK_CLS_TEST_UNSEEN[dataset]
    n_seen, n_vu = sizes["stage_1_train"][0], sizes["stage_1_val_unseen"][0]
    n_tu = FALLBACK_SIZES[dataset]["stage_2_test_unseen"][0]
    names = [f"Class{i:03d}" for i in range(max(n_seen + n_vu + n_tu, FALLBACK_ALL_CLASSES[dataset]))]
    seen, vu, tu = names[:n_seen], names[n_seen : n_seen + n_vu], names[n_seen + n_vu :]
    lists = {"stage_1_train": seen, "stage_1_val_seen": seen, "stage_1_val_unseen": vu,
             "stage_2_test_seen": seen + vu, "stage_2_test_unseen": tu[: sizes["stage_2_test_unseen"][0]]}
    counts = {s: dict(zip(lists[s], _spread(sizes[s][1], [1.0] * len(lists[s])))) for s in STORED_SPLITS}
    rng = np.random.default_rng([seed, 7])
    emb = rng.standard_normal((len(names), 300)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    lists["stage_2_train"] = seen + vu
    return Structure(dataset, split_dir, names, counts, "constants", split_lists=lists,
                     embeddings={f"class {n[5:]}": emb[i] for i, n in enumerate(names)})


def structure(metadata: Path | None, dataset: str, features: str, seed: int) -> Structure:
    split_dir = "cls_split" if features.endswith("cls") else "main_split"
    if metadata is not None and (metadata / FOLDERS[dataset] / "class-split" / "all_class.txt").is_file():
        return real_structure(metadata, dataset, split_dir)
    log(f"no metadata for {dataset} under {metadata}: using the sizes written in this script")
    return fallback_structure(dataset, split_dir, seed)


# ---------------------------------------------------------------------------------------------
# the AVCA-GZSL layout, written one class at a time
@dataclass
class LayoutStats:
    root: Path
    videos: int
    data_f32_bytes: int  # ragged float32 bytes of the values avbench stores (after its crop)
    layout_bytes: int
    gen_s: float
    mean_len: float | None = None  # steps per video as generated
    mean_len_stored: float | None = None  # after the import's centre crop


def write_layout(root: Path, st: Structure, features: str, fraction: float, seed: int) -> LayoutStats:
    import h5py

    from avbench.data.layout import DATASETS, DEFAULT_MAX_LEN, FEATURES

    t0 = time.perf_counter()
    info = DATASETS[st.dataset]
    da, dv, temporal = DIMS[features]
    feat_dir = FEATURES[features][0]
    max_len = DEFAULT_MAX_LEN.get(st.dataset)
    base = root / info.folder
    base.mkdir(parents=True)
    cs = base / "class-split"
    text_dir = base / "features" / feat_dir / "text"
    text_dir.mkdir(parents=True)
    text_path = text_dir / f"word_embeddings_{info.text_stem}_normed.npy"
    if st.class_split is not None:  # the real class lists, names and embeddings, read in place
        cs.symlink_to(st.class_split, target_is_directory=True)
        text_path.symlink_to(st.text_file)
    else:
        (cs / st.split_dir).mkdir(parents=True)
        (cs / "all_class.txt").write_text("\n".join(st.class_names) + "\n")
        with open(cs / f"{info.csv_stem}_w2v_class_names.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["original", "manual"])
            for n in st.class_names:
                w.writerow([n, f"class {n[5:]}"])
        for split, names in st.split_lists.items():
            (cs / st.split_dir / f"{split}.txt").write_text("\n".join(names) + "\n")
        np.save(text_path, np.array(st.embeddings, dtype=object), allow_pickle=True)

    rng = np.random.default_rng([seed, sum(map(ord, st.dataset + features))])
    offsets = {c: (rng.random(da, dtype=np.float32), rng.random(dv, dtype=np.float32)) for c in st.class_names}
    videos = data_bytes = steps = steps_stored = 0
    for split, per in st.scaled(fraction).items():
        dirs = {m: base / "features" / feat_dir / m / split for m in ("audio", "video")}
        for d in dirs.values():
            d.mkdir(parents=True)
        for ci, (cname, n) in enumerate(per.items()):
            ids = [f"{split[6:]}_{ci:03d}_{i:06d}" for i in range(n)]  # unique across splits
            if temporal:
                lens = np.clip(np.rint(rng.gamma(LEN_SHAPE, LEN_MEAN / LEN_SHAPE, n)), 1, LEN_MAX).astype(np.int64)
                kept = np.minimum(lens, max_len) if max_len else lens
                steps += int(lens.sum())
                steps_stored += int(kept.sum())
                data_bytes += int(kept.sum()) * (da + dv) * 4
            else:
                data_bytes += n * (da + dv) * 4
            for m, dim, off in (("audio", da, offsets[cname][0]), ("video", dv, offsets[cname][1])):
                rows = int(lens.sum()) if temporal else n
                x = rng.random((rows, dim), dtype=np.float32)
                x += off
                if temporal:
                    with open(dirs[m] / f"{cname}.pkl", "wb") as fh:
                        pickle.dump({"features": np.split(x, np.cumsum(lens)[:-1]), "video_names": ids, "fps": 25},
                                    fh, protocol=pickle.HIGHEST_PROTOCOL)
                else:
                    with h5py.File(dirs[m] / f"{cname}.h5", "w") as f:
                        f.create_dataset("data", data=x)
                        f.create_dataset("video_urls", data=np.array([i.encode() for i in ids], dtype="S80"))
                del x
            videos += n
    layout_bytes = sum(p.stat().st_size for p in (base / "features").rglob("*") if p.is_file())
    return LayoutStats(root, videos, data_bytes, layout_bytes, time.perf_counter() - t0,
                       steps / videos if temporal else None, steps_stored / videos if temporal else None)


# ---------------------------------------------------------------------------------------------
# measured child processes
def measure(cmd: list[str], env: dict, log_path: Path) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS MiB of the child, the last line of its stderr)."""
    with open(log_path.with_suffix(".out"), "wb") as out, open(log_path.with_suffix(".err"), "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    lines = log_path.with_suffix(".err").read_text(errors="replace").strip().splitlines()
    return p.returncode, wall, usage.ru_maxrss / 1024, (lines[-1] if lines else "")  # ru_maxrss: KiB on Linux


RUN_DRIVER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
a = json.loads(sys.argv[1])
from avbench.data.registry import load_benchmark
from avbench.protocol.run import run_protocol
bench = load_benchmark(a["name"], a["home"])
seen = {}
def on_data(stage, resident, nbytes, budget):
    seen[stage] = {"resident": resident, "bytes": nbytes, "budget": budget}
t1 = time.perf_counter()
r = run_protocol(bench, a["method"], seed=a["seed"], device=a["device"], stage1_only=True,
                 overrides={"epochs": 1, "batches_per_epoch": a["batches"], "threads": a["threads"]},
                 memory_budget=a["memory_budget"], on_data=on_data)
t2 = time.perf_counter()
print(json.dumps({"data_access": r.data_access, "stage": seen, "protocol_s": t2 - t1, "open_s": t1 - t0,
                  "val": r.val, "loss": r.stage1[0]["loss"], "batch_size": r.config["batch_size"],
                  "threads": r.threads, "device": r.device}))
"""


def run_case(name: str, case: Case, layout: LayoutStats, work: Path, args, env: dict) -> list[dict]:
    """The case's JSON lines: its import, then one line per memory budget with that budget's run."""
    from avbench.data.benchmark import Benchmark
    from avbench.data.registry import dataset_path

    home = work / f"home-{name}"
    key = f"{case.dataset}-{case.features}"
    out: dict = {"case": name, "dataset": case.dataset, "features": case.features, "dtype": case.dtype,
                 "fraction": args.fraction, "videos": layout.videos}
    if layout.mean_len is not None:
        out["mean_len"] = round(layout.mean_len, 1)
        out["mean_len_stored"] = round(layout.mean_len_stored, 1)
    log(f"{name}: importing")
    cmd = [sys.executable, "-m", "avbench.cli", "data", "import", "--root", str(layout.root), "--dataset",
           case.dataset, "--features", case.features, "--home", str(home), "--dtype", case.dtype]
    rc, wall, rss, tail = measure(cmd, env, work / f"import-{name}")
    out.update(import_s=round(wall, 2), import_peak_rss_mb=round(rss, 1))
    if rc != 0:
        out["error"] = f"import exited {rc}: {tail}"
        return [out]
    path = dataset_path(key, home)
    b = Benchmark.open(path)
    stored = sum(b.split_sizes[s] for s in STORED_SPLITS)
    if stored != layout.videos:
        out["error"] = f"the file holds {stored} videos, the layout {layout.videos}"
    file_bytes = path.stat().st_size
    out.update(file_mb=round(file_bytes / MIB, 1), data_f32_mb=round(layout.data_f32_bytes / MIB, 1),
               file_ratio=round(file_bytes / layout.data_f32_bytes, 3), classes=b.num_classes,
               fingerprint=b.fingerprint)
    targets: dict = {}
    if case.features == "temporal-main" and case.dataset == "activitynet":
        targets["import_peak_rss_le_2GB"] = rss <= 2 * 1024
        limit = 0.6 if case.dtype == "float16" else 1.1
        targets[f"file_ratio_le_{limit}"] = file_bytes <= limit * layout.data_f32_bytes
    if case.dataset == "vggsound" and case.features == "cls":
        targets["import_s_le_25"] = wall <= 25.0
        targets["import_peak_rss_le_3.2GB"] = rss <= 3.2 * 1024

    out["sizes_from"] = args.sizes_from.get(case.dataset)
    lines = []
    for budget in ([None] if args.no_run else args.budgets):
        line = dict(out)
        run_targets = dict(targets)
        if not args.no_run:
            temporal = DIMS[case.features][2]
            method = args.method or ("tcaf" if temporal else "avca")
            log(f"{name}: {method}, 1 stage-1 epoch of {args.batches} batches + validation, "
                f"memory budget {budget or 'auto'}")
            spec = {"name": key, "home": str(home), "method": method, "seed": args.seed, "device": args.device,
                    "batches": args.batches, "threads": args.threads, "memory_budget": budget}
            log_path = work / f"run-{name}-{budget or 'auto'}"
            rc, wall, rss, tail = measure([sys.executable, "-c", RUN_DRIVER, json.dumps(spec)], env, log_path)
            line.update(run_method=method, memory_budget=budget or "auto", run_s=round(wall, 2),
                        run_peak_rss_mb=round(rss, 1))
            if rc != 0:
                line["error"] = f"run exited {rc}: {tail}"
            else:
                r = json.loads(log_path.with_suffix(".out").read_text().strip().splitlines()[-1])
                st = r["stage"].get("stage 1", {})
                line.update(run_protocol_s=round(r["protocol_s"], 2), data_access=r["data_access"].get("stage 1"),
                            run_data_mb=None if st.get("bytes") is None else round(st["bytes"] / MIB, 1),
                            memory_budget_mb=round(st.get("budget", 0) / MIB, 1), batches=args.batches,
                            batch_size=r["batch_size"], threads=r["threads"], device=r["device"],
                            val_HM=round(100 * r["val"]["HM"], 2), loss=round(r["loss"], 4))
                if method == "tcaf" and case.dataset == "activitynet":
                    run_targets["run_peak_rss_le_6GB"] = rss <= 6 * 1024
        line["targets"] = run_targets
        lines.append(line)
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return lines


def estimate_bytes(st: Structure, features: str, fraction: float) -> int:
    da, dv, temporal = DIMS[features]
    n = sum(sum(per.values()) for per in st.scaled(fraction).values())
    return int(n * (da + dv) * 4 * (LEN_MEAN if temporal else 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=None, help=f"comma-separated, from {', '.join(CASES)} (default: all)")
    ap.add_argument("--datasets", default=None, help="comma-separated: ucf, activitynet, vggsound (default: all)")
    ap.add_argument("--fraction", type=float, default=1.0, help="share of every class's videos (at least 1 a class)")
    ap.add_argument("--batches", type=int, default=20, help="training batches of the one stage-1 epoch")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the run (and OMP_NUM_THREADS)")
    ap.add_argument("--method", default=None, help="run this method (default: tcaf on sequences, avca otherwise)")
    ap.add_argument("--memory-budget", default="auto", metavar="SIZE[,SIZE...]",
                    help="the run's --memory-budget: auto (avbench's automatic choice) or a size such as 2GB; "
                         "several, comma-separated, run once each (one JSON line each)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="folder for the temporary data (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated layouts and benchmark files")
    ap.add_argument("--metadata", default=str(DEFAULT_METADATA), help="the AVCA-GZSL metadata folder (read only)")
    ap.add_argument("--no-run", action="store_true", help="import only")
    args = ap.parse_args()
    if not 0 < args.fraction <= 1:
        ap.error("--fraction: expected 0 < f <= 1")
    names = list(CASES) if not args.cases else [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)}; expected {', '.join(CASES)}")
    if args.datasets:
        keep = {d.strip() for d in args.datasets.split(",")}
        if keep - set(FOLDERS):
            ap.error(f"--datasets: unknown {', '.join(sorted(keep - set(FOLDERS)))}")
        names = [c for c in names if CASES[c].dataset in keep]
    metadata = Path(args.metadata) if args.metadata else None
    budgets = [b.strip() for b in args.memory_budget.split(",") if b.strip()]
    args.budgets = [None if b.lower() == "auto" else b for b in budgets]
    if not args.budgets:
        ap.error("--memory-budget: expected auto or sizes")
    args.sizes_from = {}

    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    env.pop("AVBENCH_HOME", None)  # every child gets its own --home
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="avbench-scale-", dir=args.workdir))
    log(f"work folder {work}")
    layouts: dict[tuple[str, str], LayoutStats] = {}
    try:
        for i, name in enumerate(names):
            case = CASES[name]
            lk = (case.dataset, case.features)
            if lk not in layouts:
                st = structure(metadata, case.dataset, case.features, args.seed)
                args.sizes_from[case.dataset] = st.source
                need = estimate_bytes(st, case.features, args.fraction)
                free = shutil.disk_usage(work).free
                # the layout, the import's spill files and the benchmark file at once (float32)
                if 3.2 * need > free:
                    raise SystemExit(f"{work}: {free / GIB:.1f} GiB free, {name} needs about "
                                     f"{3.2 * need / GIB:.1f} GiB")
                log(f"{name}: writing the {case.dataset} {case.features} layout (~{need / GIB:.2f} GiB of features)")
                layouts[lk] = write_layout(work / f"layout-{case.dataset}-{case.features}", st, case.features,
                                           args.fraction, args.seed)
            lay = layouts[lk]
            for out in run_case(name, case, lay, work, args, env):
                out.update(gen_s=round(lay.gen_s, 2), layout_mb=round(lay.layout_bytes / MIB, 1))
                print(json.dumps(out), flush=True)
            if not args.keep and all((CASES[n].dataset, CASES[n].features) != lk for n in names[i + 1 :]):
                shutil.rmtree(lay.root, ignore_errors=True)  # no later case reads this layout
                del layouts[lk]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")


if __name__ == "__main__":
    main()
