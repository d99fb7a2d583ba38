"""Benchmark files without padding, float16 storage, streamed reading and the memory budget."""

import pickle

import h5py
import numpy as np
import pytest

from avbench.cli import main
from avbench.data import layout as layout_mod
from avbench.data.benchmark import STORED_SPLITS, Benchmark
from avbench.data.layout import import_to_file
from avbench.data.ragged import DiskRows, Ragged
from avbench.data.registry import load_benchmark
from avbench.data.synthetic import SyntheticSpec, synthetic_benchmark, write_avca_layout
from avbench.errors import ConfigError
from avbench.protocol import feed
from avbench.protocol.run import run_protocol

SPEC = SyntheticSpec(n_seen=6, n_val_unseen=3, n_test_unseen=3, train_per_class=12, val_seen_per_class=3,
                     val_unseen_per_class=6, test_seen_per_class=3, test_unseen_per_class=6, audio_dim=8,
                     video_dim=6, temporal_len=(1, 9))
TEMPORAL = "main_features_non_averaged"
TINY_AVCA = {"epochs": 2, "batches_per_epoch": 3, "batch_size": 16, "hidden_encoder": 16, "hidden_decoder": 16}
TINY_TCAF = {"epochs": 2, "batches_per_epoch": 3, "batch_size": 16}


@pytest.fixture
def temporal_layout(tmp_path):
    write_avca_layout(tmp_path / "layout", spec=SPEC, features=TEMPORAL)
    return tmp_path / "layout"


def _pickled(layout, split, cls="Class001", modality="audio"):
    with open(layout / "UCF" / "features" / TEMPORAL / modality / split / f"{cls}.pkl", "rb") as fh:
        return pickle.load(fh)


def test_sequences_round_trip_exactly_without_padding(temporal_layout, tmp_path):
    written = import_to_file(temporal_layout, "ucf", "temporal-main", tmp_path / "x.h5")
    b = Benchmark.open(written.path)
    assert b.fingerprint == written.fingerprint and b.temporal and b.dtype == "float32"
    with h5py.File(written.path) as f:  # the file holds each step once: no padding stored
        for split in STORED_SPLITS:
            g = f[f"splits/{split}"]
            assert g["audio"].shape[0] == g["audio_offsets"][-1] and g["audio"].chunks is None
    d = _pickled(temporal_layout, "stage_1_train")
    for lazy in (False, True):
        s = b.split("stage_1_train", lazy=lazy)
        for seq, vid in zip(d["features"], d["video_names"]):
            i = list(s.video_ids).index(vid)
            assert s.audio_len[i] == len(seq) and np.array_equal(s.audio.sequence(i), seq)
        # a padded batch: each sequence, then exact zeros up to the batch's longest
        rows = np.array([0, 5, 5, 11])
        x, lens = s.audio.padded(rows)
        assert x.shape[1] == lens.max()
        for r, (xi, n) in enumerate(zip(x, lens)):
            assert np.array_equal(xi[:n], s.audio.sequence(rows[r])) and not xi[n:].any()


def test_a_damaged_split_is_one_line_naming_file_and_split(temporal_layout, tmp_path):
    from avbench.errors import DataError

    written = import_to_file(temporal_layout, "ucf", "temporal-main", tmp_path / "x.h5")
    with h5py.File(written.path, "a") as f:
        del f["splits/stage_1_val_seen/audio_offsets"]  # a file damaged after the import
    b = Benchmark.open(written.path)
    b.split("stage_1_train")  # the other splits still read
    for lazy in (False, True):
        with pytest.raises(DataError, match=r"x\.h5: split stage_1_val_seen: .*re-run `avbench data import`"):
            b.split("stage_1_val_seen", lazy=lazy)


def test_in_memory_and_file_fingerprints_agree_and_float16_is_its_own_version(tmp_path):
    b = synthetic_benchmark(SPEC, variant="synthetic-temporal")
    assert Benchmark.open(b.save(tmp_path / "a.h5")).fingerprint == b.fingerprint
    half = Benchmark.from_splits(name="h", dataset="synthetic", features="temporal-main", class_names=b.class_names,
                                 embeddings=b.embeddings(), legacy_embeddings=None,
                                 splits={s: b.split(s) for s in STORED_SPLITS}, dtype="float16")
    path = half.save(tmp_path / "h.h5")
    opened = Benchmark.open(path)
    assert opened.dtype == "float16" and opened.fingerprint == half.fingerprint != b.fingerprint
    s32, s16 = b.split("stage_1_val_seen"), opened.split("stage_1_val_seen")
    assert s16.audio.values.dtype == np.float16
    assert np.array_equal(s16.audio.values, s32.audio.values.astype(np.float16))
    assert all(opened.nbytes(n) * 2 == b.nbytes(n) for n in STORED_SPLITS)  # half the bytes of float32


def test_float16_import_from_the_command_line(temporal_layout, tmp_path):
    home = tmp_path / "home"
    assert main(["data", "import", "--root", str(temporal_layout), "--dataset", "ucf", "--features", "temporal-main",
                 "--dtype", "float16", "--home", str(home)]) == 0
    b = load_benchmark("ucf-temporal-main", home)
    assert b.dtype == "float16" and b.split("stage_1_train").audio.values.dtype == np.float16


def test_verify_recomputes_fingerprints_and_finds_a_file_changed_after_import(temporal_layout, tmp_path, capsys):
    home = tmp_path / "home"
    write_avca_layout(tmp_path / "avg", spec=SyntheticSpec(**{**SPEC.__dict__, "temporal_len": None}))
    assert main(["data", "import", "--root", str(tmp_path / "avg"), "--dataset", "ucf", "--features", "main",
                 "--home", str(home)]) == 0
    assert main(["data", "import", "--root", str(temporal_layout), "--dataset", "ucf", "--features", "temporal-main",
                 "--dtype", "float16", "--home", str(home)]) == 0
    capsys.readouterr()
    assert main(["data", "verify", "--home", str(home)]) == 0  # every imported file, as written
    out = capsys.readouterr().out
    assert "ucf-main: fingerprint" in out and "ucf-temporal-main: fingerprint" in out and out.count("verified") == 2
    b = load_benchmark("ucf-main", home)
    with h5py.File(home / "datasets" / "ucf-main.h5", "r+") as f:  # one test video zeroed outside avbench
        f["splits/stage_2_test_unseen/audio"][0] = 0.0
    assert load_benchmark("ucf-main", home).fingerprint == b.fingerprint  # opening trusts the record
    assert main(["data", "verify", "--home", str(home), "--dataset", "ucf-main"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"the file records {b.fingerprint}" in err
    assert main(["data", "verify", "--home", str(tmp_path / "empty")]) == 2  # nothing to verify: one line
    assert "no imported or extracted benchmark" in capsys.readouterr().err


@pytest.mark.parametrize("variant,method,tiny", [("synthetic", "avca", TINY_AVCA),
                                                 ("synthetic-temporal", "tcaf", TINY_TCAF)])
def test_streamed_and_resident_runs_give_identical_metrics(tmp_path, variant, method, tiny):
    spec = SyntheticSpec(**{**SPEC.__dict__, "temporal_len": SPEC.temporal_len if "temporal" in variant else None,
                            "train_per_class": 40, "val_seen_per_class": 10, "val_unseen_per_class": 20,
                            "test_seen_per_class": 10, "test_unseen_per_class": 20})
    b = Benchmark.open(synthetic_benchmark(spec, variant=variant).save(tmp_path / "b.h5"))
    resident = run_protocol(b, method, seed=1, overrides=tiny)
    # every stage is larger than the budget (all of it streamed), one batch smaller
    budget = min(b.nbytes("stage_2_train"), b.nbytes("stage_2_test_seen") + b.nbytes("stage_2_test_unseen")) - 1
    streamed = run_protocol(b, method, seed=1, overrides=tiny, memory_budget=budget)
    assert set(resident.data_access.values()) == {"resident"} and set(streamed.data_access.values()) == {"streamed"}
    assert streamed.stage1 == resident.stage1 and streamed.stage2 == resident.stage2
    assert (streamed.S, streamed.U, streamed.HM, streamed.ZSL, streamed.beta) == \
        (resident.S, resident.U, resident.HM, resident.ZSL, resident.beta)


def test_evaluation_chunks_do_not_change_metrics(tmp_path, monkeypatch):
    b = synthetic_benchmark(SPEC, variant="synthetic-temporal")
    whole = run_protocol(b, "tcaf", seed=0, overrides=TINY_TCAF)
    monkeypatch.setattr(feed, "EVAL_CHUNK_BYTES", 2048)  # a few videos per chunk
    chunked = run_protocol(b, "tcaf", seed=0, overrides=TINY_TCAF)
    assert chunked.stage1 == whole.stage1 and (chunked.HM, chunked.ZSL) == (whole.HM, whole.ZSL)


def test_a_budget_smaller_than_one_batch_is_one_clear_line(tmp_path, capsys):
    b = synthetic_benchmark(SPEC, variant="synthetic-temporal")
    with pytest.raises(ConfigError, match=r"memory budget 1\.0 KB: too small for one training batch of 16 pairs"):
        run_protocol(b, "tcaf", seed=0, overrides=TINY_TCAF, memory_budget="1KB")
    rc = main(["run", "--method", "tcaf", "--dataset", "synthetic-temporal", "--memory-budget", "1KB", "--no-store",
               "--home", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "raise --memory-budget" in err[0]
    rc = main(["run", "--method", "avca", "--memory-budget", "lots", "--no-store", "--home", str(tmp_path)])
    assert rc == 2 and "memory budget 'lots': expected a size" in capsys.readouterr().err


def test_an_interrupted_import_leaves_nothing_behind(temporal_layout, tmp_path, monkeypatch):
    home = tmp_path / "home"
    real, calls = layout_mod._read_pkl, []

    def interrupted(path, vectors=False):
        calls.append(path)
        if len(calls) == 7:  # midway: some classes are already in the spill files
            raise KeyboardInterrupt
        return real(path, vectors)

    monkeypatch.setattr(layout_mod, "_read_pkl", interrupted)
    rc = main(["data", "import", "--root", str(temporal_layout), "--dataset", "ucf", "--features", "temporal-main",
               "--home", str(home)])
    assert rc == 130 and len(calls) == 7
    assert list((home / "datasets").iterdir()) == []
    # a folder left by a killed import (its process is gone) is removed by the next import
    stale = home / "datasets" / ".ucf-temporal-main.h5.import-999999999-abc"
    stale.mkdir()
    (stale / "stage_1_train.audio.raw").write_bytes(b"\0" * 64)
    monkeypatch.setattr(layout_mod, "_read_pkl", real)
    assert main(["data", "import", "--root", str(temporal_layout), "--dataset", "ucf", "--features", "temporal-main",
                 "--home", str(home)]) == 0
    assert sorted(p.name for p in (home / "datasets").iterdir()) == ["ucf-temporal-main.h5"]


def test_a_bad_file_midway_leaves_nothing_behind(temporal_layout, tmp_path):
    d = _pickled(temporal_layout, "stage_2_test_unseen", cls="Class011", modality="video")
    d["features"][0] = d["features"][0] * np.nan
    with open(temporal_layout / "UCF" / "features" / TEMPORAL / "video" / "stage_2_test_unseen" / "Class011.pkl",
              "wb") as fh:
        pickle.dump(d, fh)
    home = tmp_path / "home"
    assert main(["data", "import", "--root", str(temporal_layout), "--dataset", "ucf", "--features", "temporal-main",
                 "--home", str(home)]) == 2
    assert list((home / "datasets").iterdir()) == []


def test_format_1_files_are_still_read(tmp_path):
    """A file written before format 2 (sequences zero-padded to one length) opens and runs."""
    b = synthetic_benchmark(SPEC, variant="synthetic-temporal")
    path = tmp_path / "v1.h5"
    str_dt = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.attrs.update(format=1, name="v1", dataset="synthetic", features="temporal-main", fingerprint="0123",
                       audio_dim=b.audio_dim, video_dim=b.video_dim, source="", temporal=1)
        g = f.create_group("classes")
        g.create_dataset("names", data=np.array(b.class_names, dtype=object), dtype=str_dt)
        g.create_dataset("embeddings", data=b.embeddings())
        g.create_dataset("embeddings_legacy", data=b.embeddings("legacy"))
        for name in STORED_SPLITS:
            s = b.split(name)
            d = f.create_group(f"splits/{name}")
            for mod in ("audio", "video"):
                x, lens = getattr(s, mod).padded()
                d.create_dataset(mod, data=x)
                d.create_dataset(f"{mod}_len", data=lens)
            d.create_dataset("labels", data=s.labels)
            d.create_dataset("video_ids", data=np.array(list(s.video_ids), dtype=object), dtype=str_dt)
            d.attrs["classes"] = s.classes
    old = Benchmark.open(path)
    s_old, s_new = old.split("stage_1_train", lazy=True), b.split("stage_1_train")
    assert np.array_equal(s_old.audio.values, s_new.audio.values)
    assert np.array_equal(s_old.video_len, s_new.video_len)
    r_old = run_protocol(old, "tcaf", seed=0, overrides=TINY_TCAF)
    r_new = run_protocol(b, "tcaf", seed=0, overrides=TINY_TCAF)
    assert (r_old.HM, r_old.ZSL) == (r_new.HM, r_new.ZSL)


def test_disk_rows_read_any_rows(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f.create_dataset("x", data=x)
    with h5py.File(tmp_path / "r.h5") as f:
        rows = DiskRows(tmp_path / "r.h5", f["x"].id.get_offset(), x.shape, x.dtype)
    idx = np.array([7, 3, 4, 5, 5, 49, 0])
    assert np.array_equal(rows.take(idx), x[idx]) and np.array_equal(rows[10:20], x[10:20])
    r = Ragged(rows, np.array([0, 4, 4 + 10, 50]))
    assert np.allclose(r.mean(chunk_rows=7), np.stack([x[:4].mean(0), x[4:14].mean(0), x[14:].mean(0)]))


def test_sweep_trials_share_the_node_budget_unless_given_one():
    import torch

    from avbench.search.trial import memory_budget

    whole = feed.default_budget(torch.device("cpu"))
    assert memory_budget({"device": "cpu", "concurrent": 4, "memory_budget": None}) == whole // 4
    assert memory_budget({"device": "cpu", "concurrent": 4, "memory_budget": "2GB"}) == "2GB"
    assert feed.parse_bytes("2GB") == 2 << 30 and feed.parse_bytes("1.5k") == 1536
