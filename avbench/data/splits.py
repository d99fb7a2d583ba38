"""Which class and which video goes to which split of an extracted benchmark.

Two ways, both ending in a :class:`SplitPlan` (class roles and one split per video):

- ``from_metadata``: the public benchmark's class split (``--split-from
  ucf|activitynet|vggsound``), read from metadata laid out as the AVCA-GZSL
  ``class-split`` folders (``all_class.txt``, ``<main|cls>_split/stage_*.txt`` and,
  where present, the per-video tables ``stage_*.csv``). The user's class names are
  matched to the benchmark's ignoring case, spaces and punctuation
  (``Apply Eye Makeup`` = ``ApplyEyeMakeup``); names that match none are reported.
  With the tables (``video_split="tables"``) a video goes to the split whose table
  lists its file name (``v_Archery_g01_c01.avi`` -> ``v_Archery_g01_c01``), so
  UCF-GZSL is rebuilt video for video; videos in no table are left out and counted
  (UCF-GZSL uses 6,816 of UCF101's 13,320 videos). Where ``stage_1_train.csv`` is
  absent (VGGSound's metadata), a seen class's videos in no other table are its
  training videos. Without tables, or with ``video_split="seeded"``, videos are
  assigned by seed in the benchmark's proportions (below).
- ``seeded``: the user's own classes, split by seed in the proportions of the
  published benchmark named by ``--settings-from``.

Proportions (measured from the metadata, main_split; checked by tests/test_extract.py):
classes seen / validation-unseen / test-unseen are UCF 30/12/9, ActivityNet 99/51/50,
VGGSound 138/69/69. Videos of a seen class: 81 % stage-1 train, 9 % validation seen,
10 % test seen (all three datasets); of a validation-unseen class: 90 % validation
unseen, 10 % test seen (stage 2 sees them as seen classes); of a test-unseen class:
all test unseen (FIELD_NOTES §3). Every draw uses its own generator seeded with
``(seed, crc32(class name))``, so adding a class changes no other class's videos.
"""

from __future__ import annotations

import csv
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avbench.data.benchmark import STORED_SPLITS
from avbench.data.layout import _read_lines, check_class_roles, read_split_lists
from avbench.errors import DataError

CLASS_COUNTS = {"ucf": (30, 12, 9), "activitynet": (99, 51, 50), "vggsound": (138, 69, 69)}
DATASETS_WITH_SPLITS = tuple(CLASS_COUNTS)
SEEN_SHARES = (0.81, 0.09, 0.10)  # stage_1_train, stage_1_val_seen, stage_2_test_seen
VAL_UNSEEN_SHARES = (0.90, 0.10)  # stage_1_val_unseen, stage_2_test_seen
ROLES = ("seen", "val_unseen", "test_unseen")
# the split that defines each role: a class with no video there cannot take that role
ROLE_SPLIT = {"seen": "stage_1_train", "val_unseen": "stage_1_val_unseen", "test_unseen": "stage_2_test_unseen"}
META_FOLDERS = {"ucf": "UCF", "activitynet": "ActivityNet", "vggsound": "VGGSound"}
VIDEO_SPLITS = ("tables", "seeded")


def squash(name: str) -> str:
    """Lower case, letters and digits only: the key class names are matched by."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def humanise(name: str) -> str:
    """A class name as words for prompts: ``PlayingGuitar`` -> ``Playing Guitar``, ``dog_bark`` -> ``dog bark``."""
    s = re.sub(r"[_]+", " ", name)
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", s)
    return re.sub(r"\s+", " ", s).strip()


@dataclass
class Video:
    path: Path
    label: str  # the user's class name (folder or csv column)
    video_id: str


@dataclass
class SplitPlan:
    """Class roles, each video's split, and what was left out (for the report)."""

    class_names: list[str]  # benchmark classes, sorted (class id = position)
    prompt_names: dict[str, str]  # class -> the words its text embedding is made of
    role: dict[str, str]  # class -> seen | val_unseen | test_unseen
    assign: dict[str, str]  # video id -> split
    klass: dict[str, str]  # video id -> benchmark class
    source: str  # how the split was made (recorded in the benchmark)
    unmatched: dict[str, int] = field(default_factory=dict)  # user class -> videos (no benchmark class)
    outside: dict[str, int] = field(default_factory=dict)  # the dataset's classes in no split -> videos
    missing: list[str] = field(default_factory=list)  # benchmark classes without any video
    not_in_tables: int = 0
    conflicts: list[str] = field(default_factory=list)

    def splits(self) -> dict[str, list[str]]:
        out = {s: [] for s in STORED_SPLITS}
        for vid, s in self.assign.items():
            out[s].append(vid)
        return out


def _assign_videos(role: str, ids: list[str], seed: int, cls: str) -> dict[str, str]:
    """Seeded split of one class's videos by its role, in the benchmark's proportions."""
    ids = sorted(ids)
    rng = np.random.default_rng([seed, zlib.crc32(cls.encode())])
    order = [ids[i] for i in rng.permutation(len(ids))]
    n = len(order)
    if role == "test_unseen":
        return {v: "stage_2_test_unseen" for v in order}
    if role == "val_unseen":
        n_ts = max(1, round(n * VAL_UNSEEN_SHARES[1])) if n >= 2 else 0
        return {v: "stage_2_test_seen" if i < n_ts else "stage_1_val_unseen" for i, v in enumerate(order)}
    n_vs = max(1, round(n * SEEN_SHARES[1])) if n >= 3 else 0
    n_ts = max(1, round(n * SEEN_SHARES[2])) if n >= 3 else 0
    return {v: "stage_1_val_seen" if i < n_vs else "stage_2_test_seen" if i < n_vs + n_ts else "stage_1_train"
            for i, v in enumerate(order)}


def seeded(videos: list[Video], settings_from: str, seed: int) -> SplitPlan:
    """The user's own classes: roles and videos split by seed in ``settings_from``'s proportions."""
    names = sorted({v.label for v in videos})
    if len(names) < 3:
        raise DataError(f"{len(names)} class(es) found ({', '.join(names) or 'none'}): a benchmark needs at least 3 "
                        "(seen, validation-unseen and test-unseen classes)")
    seen_n, vu_n, tu_n = CLASS_COUNTS[settings_from]
    total = seen_n + vu_n + tu_n
    n_tu = max(1, round(len(names) * tu_n / total))
    n_vu = max(1, round(len(names) * vu_n / total))
    n_tu, n_vu = (1, 1) if len(names) - n_tu - n_vu < 1 else (n_tu, n_vu)
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    role = {c: "test_unseen" if i < n_tu else "val_unseen" if i < n_tu + n_vu else "seen" for i, c in enumerate(order)}
    by_class: dict[str, list[str]] = {}
    for v in videos:
        by_class.setdefault(v.label, []).append(v.video_id)
    assign: dict[str, str] = {}
    for c in names:
        assign.update(_assign_videos(role[c], by_class[c], seed, c))
    return SplitPlan(
        class_names=names, prompt_names={c: humanise(c) for c in names}, role=role, assign=assign,
        klass={v.video_id: v.label for v in videos},
        source=f"own classes, seeded split (seed {seed}, {settings_from}'s proportions)",
    )


# -- the public benchmark's split ------------------------------------------------
def metadata_root(metadata: Path, dataset: str) -> Path:
    """``metadata`` may hold UCF/, ActivityNet/, VGGSound/ or be one dataset's folder (holding class-split/)."""
    metadata = Path(metadata).expanduser()
    if not metadata.is_dir():
        raise DataError(f"--metadata {metadata}: no such directory (expected the folder holding "
                        f"{META_FOLDERS[dataset]}/class-split)")
    if (metadata / "class-split").is_dir():
        return metadata / "class-split"
    for cand in metadata.iterdir():
        if cand.is_dir() and cand.name.lower() == META_FOLDERS[dataset].lower() and (cand / "class-split").is_dir():
            return cand / "class-split"
    raise DataError(f"--metadata {metadata}: no {META_FOLDERS[dataset]}/class-split folder here (expected the "
                    "AVCA-GZSL metadata layout, e.g. ../shared/data/avgzsl-metadata)")


def _prompt_names(cs: Path, dataset: str, names: list[str]) -> dict[str, str]:
    """UCF: the CamelCase name as words (as ClipClap's ucf_clip_class_names.csv); others: the csv's cleaned name."""
    if dataset == "ucf":
        return {c: humanise(c) for c in names}
    path = cs / f"{dataset}_w2v_class_names.csv"
    manual = {}
    if path.is_file():
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if r.get("original") and r.get("manual"):
                    manual[squash(r["original"])] = r["manual"].strip()
    return {c: manual.get(squash(c), humanise(c)) for c in names}


def _read_table(path: Path) -> dict[str, str]:
    """video file name (no suffix) -> class name, from a stage_*.csv."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        for need in ("filename", "label"):
            if need not in fields:
                raise DataError(f"{path}: no column {need!r} (columns: {', '.join(fields)})")
        return {r["filename"].strip(): r["label"].strip() for r in reader if r.get("filename")}


def from_metadata(videos: list[Video], dataset: str, metadata: Path, variant: str = "main",
                  video_split: str | None = None, seed: int = 0) -> SplitPlan:
    """The public benchmark's class split applied to the user's videos (see the module docstring)."""
    if variant not in ("main", "cls"):
        raise DataError(f"--split {variant}: expected main or cls")
    if video_split is not None and video_split not in VIDEO_SPLITS:
        raise DataError(f"--video-split {video_split}: expected one of {', '.join(VIDEO_SPLITS)}")
    cs = metadata_root(metadata, dataset)
    all_path = cs / "all_class.txt"
    official = _read_lines(all_path)
    by_key = {squash(c): c for c in official}
    split_dir = cs / f"{variant}_split"
    # the class lists as `avbench data import` reads and checks them (one role per class)
    ids = read_split_lists(split_dir, official, {squash(c): i for i, c in enumerate(official)}, squash, all_path)
    check_class_roles(ids, official, split_dir)
    listed = {s: {official[i] for i in ids[s]} for s in STORED_SPLITS}
    role = {c: "seen" for c in listed["stage_1_train"]}
    role.update({c: "val_unseen" for c in listed["stage_1_val_unseen"]})
    role.update({c: "test_unseen" for c in listed["stage_2_test_unseen"]})

    # the user's classes -> the benchmark's
    matched: list[tuple[Video, str]] = []
    unmatched: dict[str, int] = {}
    outside: dict[str, int] = {}
    for v in videos:
        c = by_key.get(squash(v.label))
        if c is None:
            unmatched[v.label] = unmatched.get(v.label, 0) + 1
        elif c not in role:  # a class of the dataset that the benchmark does not use (UCF101's 50 without sound)
            outside[c] = outside.get(c, 0) + 1
        else:
            matched.append((v, c))
    if not matched:
        some = ", ".join(repr(c) for c in (list(unmatched) + list(outside))[:3])
        raise DataError(f"no class of the {len(videos)} videos ({some}, ...) is a class of {variant}_split in "
                        f"{split_dir} (class folders must be named as in {all_path.name}, e.g. "
                        f"{sorted(role)[0]!r}; case, spaces and punctuation do not matter)")

    tables = {s: split_dir / f"{s}.csv" for s in STORED_SPLITS}
    have = {s for s, p in tables.items() if p.is_file()}
    needed = set(STORED_SPLITS) - {"stage_1_train"}
    mode = video_split or ("tables" if needed <= have else "seeded")
    if mode == "tables" and not needed <= have:
        miss = sorted(tables[s].name for s in needed - have)
        raise DataError(f"{split_dir}: no per-video table(s) {', '.join(miss)} (--video-split tables needs them; "
                        "use --video-split seeded)")
    assign: dict[str, str] = {}
    klass: dict[str, str] = {}
    conflicts: list[str] = []
    not_in_tables = 0
    if mode == "tables":
        where: dict[str, tuple[str, str]] = {}
        for s in sorted(have):
            for fname, label in _read_table(tables[s]).items():
                where.setdefault(fname, (s, label))
        folded = {}
        for fname in where:
            folded.setdefault(fname.lower(), fname)
        hits = 0
        for v, c in matched:
            stem = v.path.stem
            key = stem if stem in where else folded.get(stem.lower())
            if key is None:
                if role[c] == "seen" and "stage_1_train" not in have:
                    assign[v.video_id], klass[v.video_id] = "stage_1_train", c
                else:
                    not_in_tables += 1
                continue
            hits += 1
            s, label = where[key]
            if squash(label) != squash(c):
                conflicts.append(f"{v.path} (class {v.label!r}) is listed in {tables[s].name} as {label!r}")
                continue
            assign[v.video_id], klass[v.video_id] = s, c
        if matched and not hits:
            example = next(iter(where), "?")
            raise DataError(f"none of the {len(matched)} videos of matching classes is named in "
                            f"{split_dir}/stage_*.csv (expected file names like {example!r}); use --video-split "
                            "seeded to split them by seed")
        source = f"{dataset} {variant}_split (per-video tables, {cs})"
    else:
        by_class: dict[str, list[str]] = {}
        for v, c in matched:
            by_class.setdefault(c, []).append(v.video_id)
            klass[v.video_id] = c
        for c, ids in by_class.items():
            assign.update(_assign_videos(role[c], ids, seed, c))
        source = f"{dataset} {variant}_split classes ({cs}), videos split by seed {seed}"
    present = sorted({klass[v] for v in assign})
    missing = sorted(set(role) - set(present))
    return SplitPlan(
        class_names=present, prompt_names=_prompt_names(cs, dataset, present),
        role={c: role[c] for c in present}, assign=assign, klass=klass, source=source, unmatched=unmatched,
        outside=outside,
        missing=missing, not_in_tables=not_in_tables, conflicts=conflicts,
    )


def finalise(plan: SplitPlan, ok: set[str]) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """Each split's videos among those extracted (``ok``), the classes kept, and the classes dropped (with why).

    A class whose defining split (stage-1 train for seen classes, validation unseen,
    test unseen) has no extracted video cannot take its role: it is left out with its
    other videos, so seen and unseen classes stay what the protocol expects.
    """
    per = {s: [] for s in STORED_SPLITS}
    count: dict[tuple[str, str], int] = {}
    for vid, s in plan.assign.items():
        if vid in ok:
            count[(plan.klass[vid], s)] = count.get((plan.klass[vid], s), 0) + 1
    dropped = []
    kept = []
    for c in plan.class_names:
        need = ROLE_SPLIT[plan.role[c]]
        if count.get((c, need), 0) == 0:
            dropped.append(f"{c} ({plan.role[c]} class without an extracted video in {need})")
        else:
            kept.append(c)
    keep = set(kept)
    for vid, s in sorted(plan.assign.items()):
        if vid in ok and plan.klass[vid] in keep:
            per[s].append(vid)
    empty = [s for s in STORED_SPLITS if not per[s]]
    if empty:
        raise DataError(f"split(s) {', '.join(empty)} have no videos ({sum(map(len, per.values()))} videos of "
                        f"{len(kept)} classes usable); every split needs at least one video")
    return per, kept, dropped
