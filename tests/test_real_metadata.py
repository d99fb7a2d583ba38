"""The real class structure of the benchmarks (../shared/data/avgzsl-metadata)."""

import csv

import numpy as np
import pytest

from avbench.cli import main
from avbench.data.benchmark import SPLITS
from avbench.data.layout import (
    DATASETS,
    build_embedding_matrices,
    check_class_roles,
    read_embeddings,
    read_name_map,
    read_split_lists,
)
from avbench.data.registry import load_benchmark
from avbench.data.synthetic import SyntheticSpec, write_avca_layout
from avbench.protocol.run import run_protocol

from conftest import METADATA, needs_metadata

pytestmark = needs_metadata()


def _lines(path):
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _matrices(ds):
    info = DATASETS[ds]
    cs = METADATA / info.folder / "class-split"
    fold = str.lower if info.case_insensitive else (lambda s: s)
    names = sorted(_lines(cs / "all_class.txt"))
    csv_path = cs / f"{info.csv_stem}_w2v_class_names.csv"
    emb_path = METADATA / "w2v_features" / f"word_embeddings_{info.text_stem}_normed.npy"
    emb = read_embeddings(emb_path)
    name_map = read_name_map(csv_path, fold)
    by_name, legacy = build_embedding_matrices(names, name_map, emb, fold, csv_path, emb_path)
    return names, name_map, emb, by_name, legacy


@pytest.mark.parametrize("ds, misassigned", [("ucf", 79), ("activitynet", 8), ("vggsound", 205)])
def test_by_name_matrix_and_the_public_codes_order(ds, misassigned):
    names, name_map, emb, by_name, legacy = _matrices(ds)
    fold = str.lower if DATASETS[ds].case_insensitive else (lambda s: s)
    for i, c in enumerate(names):  # every class gets the vector of its own cleaned name
        assert np.array_equal(by_name[i], emb[name_map[fold(c)]])
    assert len({row.tobytes() for row in by_name}) == len(names)
    # the public code's order: class id i gets the i-th vector in sorted cleaned-name order
    assert int((~np.all(by_name == legacy, axis=1)).sum()) == misassigned


def test_legacy_order_example_from_the_field_notes():
    names, _, emb, _, legacy = _matrices("ucf")
    assert np.array_equal(legacy[names.index("CleanAndJerk")], emb["Cliff Diving"])


def _real_ucf_layout(root, per_class=4):
    cs = METADATA / "UCF" / "class-split"
    sp = cs / "main_split"
    split_lists = {s: _lines(sp / f"{s}.txt") for s in SPLITS}
    canon = {c.lower(): c for c in _lines(cs / "all_class.txt")}
    roles = [split_lists["stage_1_train"], split_lists["stage_1_val_unseen"], split_lists["stage_2_test_unseen"]]
    ordered = [canon[c.lower()] for role in roles for c in role]
    with open(cs / "ucf_w2v_class_names.csv", newline="") as fh:
        cleaned = {r["original"]: r["manual"] for r in csv.DictReader(fh)}
    cleaned_by_canon = {canon[k.lower()]: v for k, v in cleaned.items()}
    emb = np.load(METADATA / "w2v_features" / "word_embeddings_ucf_normed.npy", allow_pickle=True).item()
    spec = SyntheticSpec(
        n_seen=len(roles[0]),
        n_val_unseen=len(roles[1]),
        n_test_unseen=len(roles[2]),
        train_per_class=per_class,
        val_seen_per_class=2,
        val_unseen_per_class=per_class,
        test_seen_per_class=2,
        test_unseen_per_class=per_class,
        audio_dim=32,
        video_dim=24,
        class_names=ordered,
    )
    write_avca_layout(
        root,
        "UCF",
        spec,
        cleaned_names={c: cleaned_by_canon[c] for c in ordered},
        split_lists=split_lists,
        embeddings={cleaned_by_canon[c]: emb[cleaned_by_canon[c]] for c in ordered},
    )
    return split_lists, cleaned_by_canon, emb


def test_real_ucf_structure_imports_end_to_end(tmp_path, capsys):
    split_lists, cleaned, emb = _real_ucf_layout(tmp_path / "download")
    home = tmp_path / "home"
    assert main(["data", "import", "--root", str(tmp_path / "download"), "--dataset", "ucf", "--home", str(home)]) == 0
    assert "imported ucf-main" in capsys.readouterr().out
    b = load_benchmark("ucf", home)
    counts = {s: len(b.split_classes[s]) for s in SPLITS}
    assert counts == {s: len(split_lists[s]) for s in SPLITS}
    assert counts == {
        "stage_1_train": 30,
        "stage_1_val_seen": 30,
        "stage_1_val_unseen": 12,
        "stage_2_train": 42,
        "stage_2_test_seen": 42,
        "stage_2_test_unseen": 9,
    }
    # every class got its own embedding, found by name (case differences included, e.g. HandStandPushups)
    E = b.embeddings("by-name")
    for i, c in enumerate(b.class_names):
        assert np.array_equal(E[i], emb[cleaned[c]]), c
    assert len({row.tobytes() for row in E}) == b.num_classes
    # the split files spell some classes differently from all_class.txt; those resolved too
    assert "HandStandPushups" in split_lists["stage_1_val_seen"] and "HandstandPushups" in b.class_names
    # and the protocol runs on it, recording the text order used
    r = run_protocol(b, "avca", seed=0, text_order="legacy", overrides={"epochs": 1, "batches_per_epoch": 2, "batch_size": 16})
    assert r.text_order == "legacy" and r.data_fingerprint == b.fingerprint


@pytest.mark.parametrize("ds", ["ucf", "activitynet", "vggsound"])
@pytest.mark.parametrize("split_dir", ["main_split", "cls_split"])
def test_real_split_lists_pass_the_class_role_checks(ds, split_dir):
    info = DATASETS[ds]
    cs = METADATA / info.folder / "class-split"
    fold = str.lower if info.case_insensitive else (lambda s: s)
    names = sorted(_lines(cs / "all_class.txt"))
    class_id = {fold(c): i for i, c in enumerate(names)}
    listed = read_split_lists(cs / split_dir, names, class_id, fold, cs / "all_class.txt")
    check_class_roles(listed, names, cs / split_dir)  # raises DataError on a violation
    n_unseen = len(set(listed["stage_2_test_unseen"]))
    assert len(set(listed["stage_2_test_seen"]) | set(listed["stage_2_test_unseen"])) == len(set(listed["stage_2_train"])) + n_unseen
