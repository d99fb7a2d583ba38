"""`avbench data import`: every validation rule of the AVCA-GZSL layout importer.

Each test corrupts a fresh copy of a small synthetic layout (written once per
session by :func:`write_avca_layout`) and checks that the import fails with ONE
:class:`DataError` line naming the offending file and, where relevant, the field
or value at fault. The CLI tests check exit code 2, one ``avbench: error:`` line
on stderr and that nothing is written under ``--home``; the positive tests check
that a valid (or case-shuffled) layout imports faithfully.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from avbench.cli import main as cli_main
from avbench.data.benchmark import SPLITS, STORED_SPLITS, fingerprint_of
from avbench.data.layout import import_layout
from avbench.data.registry import load_benchmark
from avbench.data.synthetic import SyntheticSpec, generate, write_avca_layout
from avbench.errors import DataError

SPEC = SyntheticSpec(
    n_seen=4,
    n_val_unseen=2,
    n_test_unseen=2,
    train_per_class=5,
    val_seen_per_class=3,
    val_unseen_per_class=4,
    test_seen_per_class=3,
    test_unseen_per_class=4,
    audio_dim=8,
    video_dim=6,
    text_dim=300,
)
NAMES = [f"Class{c:03d}" for c in range(SPEC.n_classes)]
SEEN = NAMES[: SPEC.n_seen]
VAL_UNSEEN = NAMES[SPEC.n_seen : SPEC.n_seen + SPEC.n_val_unseen]
TEST_UNSEEN = NAMES[SPEC.n_seen + SPEC.n_val_unseen :]

# classes and videos per split, as the synthetic generator lays them out
EXPECTED_CLASSES = {
    "stage_1_train": SEEN,
    "stage_1_val_seen": SEEN,
    "stage_1_val_unseen": VAL_UNSEEN,
    "stage_2_train": SEEN + VAL_UNSEEN,
    "stage_2_test_seen": SEEN + VAL_UNSEEN,
    "stage_2_test_unseen": TEST_UNSEEN,
}
EXPECTED_SIZES = {
    "stage_1_train": SPEC.n_seen * SPEC.train_per_class,
    "stage_1_val_seen": SPEC.n_seen * SPEC.val_seen_per_class,
    "stage_1_val_unseen": SPEC.n_val_unseen * SPEC.val_unseen_per_class,
    "stage_2_test_seen": (SPEC.n_seen + SPEC.n_val_unseen) * SPEC.test_seen_per_class,
    "stage_2_test_unseen": SPEC.n_test_unseen * SPEC.test_unseen_per_class,
}
EXPECTED_SIZES["stage_2_train"] = sum(
    EXPECTED_SIZES[k] for k in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen")
)

CSV_REL = "class-split/ucf_w2v_class_names.csv"
EMB_REL = "features/main_features/text/word_embeddings_ucf_normed.npy"


def cleaned(name: str) -> str:
    return name.replace("Class", "class ")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine_layout")
    write_avca_layout(root, folder="UCF", spec=SPEC)
    return root


@pytest.fixture
def layout(pristine, tmp_path) -> Path:
    """A fresh, writable copy of the valid layout; returns the root holding UCF/."""
    root = tmp_path / "layout"
    shutil.copytree(pristine, root)
    return root


# --------------------------------------------------------------------------- helpers
def ucf(root: Path) -> Path:
    return root / "UCF"


def split_txt(root: Path, split: str) -> Path:
    return ucf(root) / "class-split" / "main_split" / f"{split}.txt"


def h5_path(root: Path, modality: str, split: str, cls: str) -> Path:
    return ucf(root) / "features" / "main_features" / modality / split / f"{cls}.h5"


def rel(root: Path, path: Path) -> str:
    """Path relative to the dataset folder, as it must appear inside the message."""
    return path.relative_to(ucf(root)).as_posix()


def read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["data"][()], f["video_urls"][()]


def write_h5(path: Path, data=None, urls=None) -> None:
    """Overwrite ``path``; a dataset passed as None is left out of the file."""
    path.unlink(missing_ok=True)
    with h5py.File(path, "w") as f:
        if data is not None:
            f.create_dataset("data", data=np.asarray(data, dtype=np.float32))
        if urls is not None:
            f.create_dataset("video_urls", data=np.asarray(urls, dtype="S80"))


def load_emb(root: Path) -> dict:
    return np.load(ucf(root) / EMB_REL, allow_pickle=True).item()


def save_emb(root: Path, emb: dict) -> None:
    np.save(ucf(root) / EMB_REL, np.array(emb, dtype=object), allow_pickle=True)


def drop_csv_rows(root: Path, originals: set[str]) -> None:
    path = ucf(root) / CSV_REL
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([r for r in rows if r[0] not in originals])


def assert_one_line(msg: str) -> None:
    assert msg, "empty error message"
    assert "\n" not in msg and "\r" not in msg, f"message is not one line: {msg!r}"


def expect_error(root: Path, *fragments: str) -> str:
    """Import must fail with one DataError line containing every fragment."""
    with pytest.raises(DataError) as ei:
        import_layout(root, "ucf", "main")
    msg = str(ei.value)
    assert_one_line(msg)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in error message: {msg}"
    return msg


# --------------------------------------------------------------------------- sanity
def test_pristine_layout_imports(layout):
    bench = import_layout(layout, "ucf", "main")
    assert bench.class_names == NAMES
    assert {k: len(v) for k, v in bench.split_classes.items()} == {k: len(v) for k, v in EXPECTED_CLASSES.items()}


# --------------------------------------------------------------------------- 1. split files
def test_missing_split_file(layout):
    path = split_txt(layout, "stage_1_val_seen")
    path.unlink()
    msg = expect_error(layout, rel(layout, path))
    assert "missing" in msg


# --------------------------------------------------------------------------- 2. folders / class files
def test_missing_class_folder(layout):
    folder = ucf(layout) / "features" / "main_features" / "video" / "stage_2_test_unseen"
    shutil.rmtree(folder)
    msg = expect_error(layout, rel(layout, folder))
    assert "missing" in msg


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_missing_class_file(layout, modality):
    path = h5_path(layout, modality, "stage_1_val_seen", "Class001")
    path.unlink()
    expect_error(layout, rel(layout, path), "Class001")


# --------------------------------------------------------------------------- 3. h5 datasets
@pytest.mark.parametrize("missing", ["data", "video_urls"])
def test_h5_without_dataset(layout, missing):
    path = h5_path(layout, "video", "stage_1_train", "Class002")
    data, urls = read_h5(path)
    write_h5(path, data=None if missing == "data" else data, urls=None if missing == "video_urls" else urls)
    expect_error(layout, rel(layout, path), repr(missing))


def test_h5_not_readable(layout):
    path = h5_path(layout, "audio", "stage_1_val_unseen", "Class004")
    path.write_bytes(b"this is not hdf5")
    expect_error(layout, rel(layout, path))


def test_h5_urls_and_rows_disagree_within_file(layout):
    path = h5_path(layout, "audio", "stage_1_train", "Class003")
    data, urls = read_h5(path)
    write_h5(path, data=data, urls=urls[:-1])
    expect_error(layout, rel(layout, path), "video_urls", "data", str(len(urls) - 1), str(len(data)))


def test_h5_data_not_2d(layout):
    path = h5_path(layout, "audio", "stage_1_train", "Class003")
    data, urls = read_h5(path)
    write_h5(path, data=data[:, 0], urls=urls)
    expect_error(layout, rel(layout, path), "'data'")


# --------------------------------------------------------------------------- 4. feature widths
@pytest.mark.parametrize("modality,width", [("audio", SPEC.audio_dim + 3), ("video", SPEC.video_dim - 2)])
def test_feature_width_mismatch(layout, modality, width):
    path = h5_path(layout, modality, "stage_1_val_seen", "Class001")
    data, urls = read_h5(path)
    write_h5(path, data=np.ones((len(urls), width), np.float32), urls=urls)
    default = SPEC.audio_dim if modality == "audio" else SPEC.video_dim
    expect_error(layout, rel(layout, path), "'data'", f"{width}-d", f"{default}-d")


# --------------------------------------------------------------------------- 5. audio vs video
def test_audio_video_disagree_on_video_ids(layout):
    path = h5_path(layout, "video", "stage_1_val_seen", "Class001")
    data, urls = read_h5(path)
    urls = urls.copy()
    urls[1] = b"v_bogus_video"
    write_h5(path, data=data, urls=urls)
    expect_error(
        layout,
        rel(layout, path),
        rel(layout, h5_path(layout, "audio", "stage_1_val_seen", "Class001")),
        "video_urls",
        "v_bogus_video",
    )


def test_audio_video_disagree_on_counts(layout):
    path = h5_path(layout, "video", "stage_2_test_seen", "Class005")
    data, urls = read_h5(path)
    write_h5(path, data=data[:-1], urls=urls[:-1])
    n = SPEC.test_seen_per_class
    expect_error(layout, rel(layout, path), "video_urls", f"{n - 1} vs {n}")


def test_audio_video_same_ids_other_order_is_aligned(layout):
    """Not an error: the video file is re-ordered to the audio file's order."""
    path = h5_path(layout, "video", "stage_1_train", "Class000")
    data, urls = read_h5(path)
    write_h5(path, data=data[::-1], urls=urls[::-1])
    bench = import_layout(layout, "ucf", "main")
    s = bench.split("stage_1_train")
    m = s.labels == 0
    assert list(s.video_ids[m]) == [u.decode() for u in urls]
    np.testing.assert_array_equal(s.video[m], data)


# --------------------------------------------------------------------------- 6. NaN / inf
@pytest.mark.parametrize(
    "modality,bad",
    [("audio", np.nan), ("video", np.nan), ("audio", np.inf), ("video", -np.inf)],
)
def test_non_finite_features(layout, modality, bad):
    path = h5_path(layout, modality, "stage_1_val_unseen", "Class005")
    data, urls = read_h5(path)
    data = data.copy()
    data[2, 1] = bad
    write_h5(path, data=data, urls=urls)
    expect_error(layout, rel(layout, path), "'data'", "NaN/inf", "row 2", urls[2].decode())


@pytest.mark.parametrize("rule", ["nan", "leak"])
def test_video_id_quoted_plainly_in_messages(layout, rule):
    if rule == "nan":
        _corrupt_nan(layout)
        url = "v_Class001_tr0000"
    else:
        _corrupt_leak(layout)
        url = f"v_Class002_tr{SPEC.train_per_class - 1:04d}"
    msg = expect_error(layout, url)
    assert f"video '{url}'" in msg and "np.str_" not in msg


# --------------------------------------------------------------------------- 7. empty class
def test_empty_class(layout):
    for modality, dim in (("audio", SPEC.audio_dim), ("video", SPEC.video_dim)):
        path = h5_path(layout, modality, "stage_2_test_unseen", "Class007")
        write_h5(path, data=np.zeros((0, dim), np.float32), urls=np.zeros((0,), "S80"))
    msg = expect_error(layout, rel(layout, h5_path(layout, "audio", "stage_2_test_unseen", "Class007")))
    assert "empty" in msg and "0" in msg


# --------------------------------------------------------------------------- 8. disjoint splits
def test_video_in_two_splits(layout):
    _, train_urls = read_h5(h5_path(layout, "audio", "stage_1_train", "Class002"))
    leaked = train_urls[0]
    for modality in ("audio", "video"):
        path = h5_path(layout, modality, "stage_1_val_seen", "Class002")
        data, urls = read_h5(path)
        urls = urls.copy()
        urls[0] = leaked  # same row in both modalities: audio and video still agree
        write_h5(path, data=data, urls=urls)
    expect_error(
        layout,
        rel(layout, h5_path(layout, "audio", "stage_1_val_seen", "Class002")),
        leaked.decode(),
        "stage_1_train",
        "stage_1_val_seen",
    )


# --------------------------------------------------------------------------- 9. class roles
def _add_class_to_split(root: Path, cls: str, split: str, source_split: str) -> None:
    """List ``cls`` in ``split`` too, with consistent feature files of fresh video ids."""
    p = split_txt(root, split)
    p.write_text(p.read_text() + cls + "\n")
    for modality in ("audio", "video"):
        data, urls = read_h5(h5_path(root, modality, source_split, cls))
        fresh = np.array([u + b"_extra" for u in urls], dtype="S80")
        write_h5(h5_path(root, modality, split, cls), data=data, urls=fresh)


def test_val_unseen_class_in_stage1_train(layout):
    cls = VAL_UNSEEN[0]
    _add_class_to_split(layout, cls, "stage_1_train", "stage_1_val_unseen")
    expect_error(layout, "stage_1_train.txt", repr(cls), "unseen")


@pytest.mark.parametrize("split", ["stage_1_train", "stage_1_val_seen", "stage_1_val_unseen"])
def test_test_unseen_class_in_stage2_training_split(layout, split):
    cls = TEST_UNSEEN[1]
    _add_class_to_split(layout, cls, split, "stage_2_test_unseen")
    expect_error(layout, "stage_2_test_unseen.txt", repr(cls), "unseen")


def test_split_lists_unknown_class(layout):
    p = split_txt(layout, "stage_1_val_seen")
    p.write_text(p.read_text() + "NoSuchClass\n")
    expect_error(layout, rel(layout, p), "'NoSuchClass'", "all_class.txt")


# --------------------------------------------------------------------------- 10. embeddings
def test_embedding_width_mismatch(layout):
    emb = load_emb(layout)
    bad = cleaned("Class005")
    emb[bad] = emb[bad][:299]
    save_emb(layout, emb)
    expect_error(layout, EMB_REL, "width", "299", "300", repr(bad))


def test_embedding_not_finite(layout):
    emb = load_emb(layout)
    bad = cleaned("Class003")
    emb[bad] = emb[bad].copy()
    emb[bad][7] = np.nan
    save_emb(layout, emb)
    expect_error(layout, EMB_REL, repr(bad), "NaN/inf")


# --------------------------------------------------------------------------- 11. unresolved names
def _assert_lists_exactly(msg: str, unresolved: list[str]) -> None:
    for name in unresolved:
        assert name in msg, f"unresolved class {name!r} not listed: {msg}"
    for name in set(NAMES) - set(unresolved):
        assert name not in msg, f"resolved class {name!r} listed as unresolved: {msg}"
    assert f"{len(unresolved)} class" in msg


def test_unresolved_names_missing_from_csv(layout):
    gone = ["Class001", "Class006"]
    drop_csv_rows(layout, set(gone))
    msg = expect_error(layout, "ucf_w2v_class_names.csv", "word_embeddings_ucf_normed.npy")
    _assert_lists_exactly(msg, gone)


def test_unresolved_names_missing_from_embeddings(layout):
    gone = ["Class002", "Class007"]
    emb = load_emb(layout)
    for n in gone:
        del emb[cleaned(n)]
    save_emb(layout, emb)
    msg = expect_error(layout, EMB_REL)
    _assert_lists_exactly(msg, gone)
    for n in gone:
        assert repr(cleaned(n)) in msg  # the cleaned name that was looked up


def test_unresolved_names_mixed_csv_and_embeddings(layout):
    drop_csv_rows(layout, {"Class000"})
    emb = load_emb(layout)
    del emb[cleaned("Class004")]
    save_emb(layout, emb)
    msg = expect_error(layout, EMB_REL, "ucf_w2v_class_names.csv")
    _assert_lists_exactly(msg, ["Class000", "Class004"])


# --------------------------------------------------------------------------- 12. CLI errors
def _corrupt_split_file(root):
    split_txt(root, "stage_1_val_seen").unlink()


def _corrupt_nan(root):
    path = h5_path(root, "audio", "stage_1_train", "Class001")
    data, urls = read_h5(path)
    data = data.copy()
    data[0, 0] = np.nan
    write_h5(path, data=data, urls=urls)


def _corrupt_names(root):
    drop_csv_rows(root, {"Class001", "Class006"})


def _corrupt_leak(root):
    _, train_urls = read_h5(h5_path(root, "audio", "stage_1_train", "Class002"))
    for modality in ("audio", "video"):
        path = h5_path(root, modality, "stage_2_test_seen", "Class002")
        data, urls = read_h5(path)
        urls = urls.copy()
        urls[-1] = train_urls[-1]
        write_h5(path, data=data, urls=urls)


def _cli_import(root, home, capsys):
    capsys.readouterr()
    rc = cli_main(
        ["data", "import", "--root", str(root), "--dataset", "ucf", "--features", "main", "--home", str(home)]
    )
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("corrupt", [_corrupt_split_file, _corrupt_nan, _corrupt_names, _corrupt_leak])
def test_cli_bad_input(layout, tmp_path, capsys, corrupt):
    corrupt(layout)
    home = tmp_path / "home"
    rc, out, err = _cli_import(layout, home, capsys)
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {err!r}"
    assert lines[0].startswith("avbench: error:")
    assert "Traceback" not in err
    datasets = home / "datasets"
    assert not datasets.exists() or not any(datasets.iterdir()), list(datasets.iterdir())


def test_cli_failed_reimport_keeps_previous_benchmark(layout, tmp_path, capsys):
    home = tmp_path / "home"
    rc, _, _ = _cli_import(layout, home, capsys)
    assert rc == 0
    saved = home / "datasets" / "ucf-main.h5"
    before = saved.read_bytes()
    _corrupt_nan(layout)
    rc, _, err = _cli_import(layout, home, capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("avbench: error:")
    assert sorted(p.name for p in (home / "datasets").iterdir()) == ["ucf-main.h5"]  # no temp file left
    assert saved.read_bytes() == before


def test_cli_missing_root(tmp_path, capsys):
    home = tmp_path / "home"
    rc, _, err = _cli_import(tmp_path / "nowhere", home, capsys)
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("avbench: error:")
    assert "nowhere" in err
    assert not (home / "datasets").exists()


# --------------------------------------------------------------------------- 13. a valid import
def test_valid_import_via_cli(layout, tmp_path, capsys):
    home = tmp_path / "home"
    rc, out, err = _cli_import(layout, home, capsys)
    assert rc == 0, err
    assert "ucf-main" in out
    assert (home / "datasets" / "ucf-main.h5").is_file()

    bench = load_benchmark("ucf", home)
    assert bench.name == "ucf-main" and bench.dataset == "ucf" and bench.features == "main"
    assert bench.class_names == NAMES
    assert (bench.audio_dim, bench.video_dim, bench.text_dim) == (SPEC.audio_dim, SPEC.video_dim, SPEC.text_dim)
    for split in SPLITS:
        got = [bench.class_names[c] for c in bench.split_classes[split]]
        assert got == EXPECTED_CLASSES[split], split
        assert bench.split_sizes[split] == EXPECTED_SIZES[split], split

    parts = [bench.split(s) for s in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen")]
    s2 = bench.split("stage_2_train")
    assert len(s2) == sum(len(p) for p in parts) == EXPECTED_SIZES["stage_2_train"]
    assert list(s2.video_ids) == [v for p in parts for v in p.video_ids]
    assert [bench.class_names[c] for c in np.unique(s2.labels)] == SEEN + VAL_UNSEEN
    for split in STORED_SPLITS:
        s = bench.split(split)
        assert len(s) == EXPECTED_SIZES[split]
        assert s.audio.shape == (len(s), SPEC.audio_dim) and s.video.shape == (len(s), SPEC.video_dim)
        assert len(set(s.video_ids)) == len(s)
        for c in np.unique(s.labels):  # every video id carries its own class name
            assert all(f"_{bench.class_names[c]}_" in v for v in s.video_ids[s.labels == c])

    # the by-name embeddings are the generator's own, row c for class c
    g = generate(SPEC)
    np.testing.assert_allclose(bench.embeddings("by-name"), g["embeddings"][[g["class_names"].index(n) for n in NAMES]])

    # the stored fingerprint is the fingerprint of the stored data
    splits = {s: bench.split(s) for s in STORED_SPLITS}
    assert fingerprint_of(bench.class_names, bench.embeddings("by-name"), bench.embeddings("legacy"), splits) == bench.fingerprint

    # stable: a second import (another home, root given as the dataset folder itself) and the in-memory import agree
    home2 = tmp_path / "home2"
    rc, _, err = _cli_import(ucf(layout), home2, capsys)
    assert rc == 0, err
    assert load_benchmark("ucf-main", home2).fingerprint == bench.fingerprint
    rc, _, err = _cli_import(layout, home, capsys)  # re-import over the existing file
    assert rc == 0, err
    assert load_benchmark("ucf", home).fingerprint == bench.fingerprint
    assert import_layout(layout, "ucf", "main").fingerprint == bench.fingerprint


def test_fingerprint_changes_with_data(layout):
    before = import_layout(layout, "ucf", "main").fingerprint
    path = h5_path(layout, "audio", "stage_2_test_unseen", "Class006")
    data, urls = read_h5(path)
    write_h5(path, data=data + 1.0, urls=urls)
    assert import_layout(layout, "ucf", "main").fingerprint != before


# --------------------------------------------------------------------------- 14. UCF is case-insensitive
def test_ucf_case_insensitive_names(layout, tmp_path, capsys):
    # Class002 (seen): files lower-cased; Class005 (val-unseen): files upper-cased
    renames = {"Class002": "class002", "Class005": "CLASS005"}
    originals = {}
    for modality in ("audio", "video"):
        for split in STORED_SPLITS:
            for cls, new in renames.items():
                p = h5_path(layout, modality, split, cls)
                if p.is_file():
                    originals[(modality, split, cls)] = read_h5(p)
                    p.rename(p.with_name(f"{new}.h5"))
                    assert not p.exists()
    assert len(originals) == 2 * (3 + 2)  # seen: 3 splits, val-unseen: 2 splits; both modalities
    txt_case = {"Class002": "CLASS002", "Class005": "class005"}
    for split in SPLITS:
        p = split_txt(layout, split)
        lines = p.read_text().splitlines()
        p.write_text("\n".join(txt_case.get(ln, ln) for ln in lines) + "\n")

    home = tmp_path / "home"
    rc, _, err = _cli_import(layout, home, capsys)
    assert rc == 0, err
    bench = load_benchmark("ucf", home)
    assert bench.class_names == NAMES
    emb = load_emb(layout)
    for cls in renames:
        c = bench.class_names.index(cls)
        np.testing.assert_array_equal(bench.embeddings("by-name")[c], np.asarray(emb[cleaned(cls)], np.float32))
    for split in SPLITS:
        assert [bench.class_names[c] for c in bench.split_classes[split]] == EXPECTED_CLASSES[split]
        assert bench.split_sizes[split] == EXPECTED_SIZES[split]
    for (modality, split, cls), (data, urls) in originals.items():
        s = bench.split(split)
        m = s.labels == bench.class_names.index(cls)
        assert list(s.video_ids[m]) == [u.decode() for u in urls]
        np.testing.assert_array_equal(getattr(s, modality)[m], data)


def test_ucf_case_insensitive_csv_and_embedding_keys(layout):
    """The csv's original names and the embedding keys may differ in case too."""
    path = ucf(layout) / CSV_REL
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([[r[0].upper() if r[0] == "Class003" else r[0], r[1]] for r in rows])
    emb = load_emb(layout)
    vec = emb.pop(cleaned("Class006"))
    emb[cleaned("Class006").upper()] = vec
    save_emb(layout, emb)
    bench = import_layout(layout, "ucf", "main")
    np.testing.assert_array_equal(bench.embeddings("by-name")[NAMES.index("Class006")], vec)
    orig = load_emb(layout)
    np.testing.assert_array_equal(bench.embeddings("by-name")[NAMES.index("Class003")], orig[cleaned("Class003")])


# --------------------------------------------------------------------------- registry
def test_load_benchmark_not_imported(tmp_path):
    home = tmp_path / "empty_home"
    home.mkdir()
    with pytest.raises(DataError) as ei:
        load_benchmark("activitynet", home)
    msg = str(ei.value)
    assert_one_line(msg)
    assert "avbench data import" in msg
    assert "activitynet" in msg
