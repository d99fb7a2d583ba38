"""`avbench data extract`: raw videos -> CLIP/CLAP features -> a benchmark every method runs on.

No model can be downloaded here: the tests build tiny randomly initialised CLIP and
CLAP models (with tokenizers from vocabularies written on the spot) and save them to
a folder, so the code path is the real one (``from_pretrained`` on that folder). The
videos are written with PyAV: a coloured moving bar and a tone per class.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("transformers")

from avbench.cli import main  # noqa: E402
from avbench.data.benchmark import STORED_SPLITS  # noqa: E402
from avbench.data.extract import ExtractOptions, check_options, extract, find_videos  # noqa: E402
from avbench.data.media import write_video  # noqa: E402
from avbench.data.registry import list_benchmarks, load_benchmark  # noqa: E402
from avbench.data.splits import CLASS_COUNTS, SEEN_SHARES, VAL_UNSEEN_SHARES  # noqa: E402
from avbench.errors import DataError  # noqa: E402

from conftest import METADATA, needs_metadata  # noqa: E402

CLASSES = {"Archery": ((200, 40, 40), 440), "PlayingGuitar": ((40, 200, 40), 660),
           "dog_bark": ((40, 40, 200), 880), "Rain": ((200, 200, 40), 1100)}


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    from avbench.data.encoders import save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def own_videos(tmp_path_factory):
    """4 classes x 4 videos of 1-1.75 s, plus a corrupt file, a silent video and a text file."""
    root = tmp_path_factory.mktemp("videos")
    for c, (color, hz) in CLASSES.items():
        for i in range(4):
            write_video(root / c / f"{c}_{i}.mp4", seconds=1 + 0.25 * i, color=color, tone_hz=hz + 10 * i)
    write_video(root / "Rain" / "silent.mp4", seconds=1, tone_hz=None)
    (root / "Rain" / "corrupt.mp4").write_bytes(b"not a video" * 40)
    (root / "Rain" / "notes.txt").write_text("not a video either")
    return root


def _extract(argv: list[str], capsys) -> dict:
    assert main(["data", "extract", *argv, "--json", "--quiet", "--workers", "1", "--batch-size", "4"]) == 0
    return json.loads(capsys.readouterr().out)


def _args(videos, models, home, *extra):
    return ["--videos", str(videos), "--clip", str(models[0]), "--clap", str(models[1]), "--home", str(home), *extra]


def test_own_classes_extract_list_and_run_avca(own_videos, models, tmp_path, capsys):
    home = tmp_path / "home"
    rep = _extract(_args(own_videos, models, home, "--name", "Mine", "--settings-from", "ucf"), capsys)
    # the corrupt file and the silent video are reported and skipped, the text file ignored
    reasons = {f["path"].rsplit("/", 1)[-1]: f["reason"] for f in rep["failed"]}
    assert set(reasons) == {"corrupt.mp4", "silent.mp4"}
    assert reasons["silent.mp4"] == "no audio track" and reasons["corrupt.mp4"].startswith("unreadable")
    assert (rep["videos_found"], rep["extracted"], rep["cached"], rep["files_ignored"]) == (18, 16, 0, 1)
    # its own dataset (results are filed under it), with UCF-GZSL's settings
    assert (rep["name"], rep["dataset"], rep["features"]) == ("mine", "mine", "clipclap")
    # 4 classes in UCF-GZSL's proportions: 2 seen, 1 validation-unseen, 1 test-unseen
    assert [rep["splits"][s]["classes"] for s in STORED_SPLITS] == [2, 2, 1, 3, 1]

    b = load_benchmark("mine", home)
    assert (b.audio_dim, b.video_dim, b.text_dim, b.temporal) == (24, 16, 16 + 24, False)
    assert b.class_names == sorted(CLASSES) and "settings of ucf" in b.source and b.settings_dataset == "ucf"
    e = b.embeddings()  # CLIP text ‖ CLAP text, each part L2-normalised
    assert np.allclose(np.linalg.norm(e[:, :16], axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(e[:, 16:], axis=1), 1, atol=1e-5)
    tr = b.split("stage_1_train")
    assert np.allclose(np.linalg.norm(tr.video, axis=1), 1, atol=1e-5) and np.all(np.isfinite(tr.audio))
    rows = {r["name"]: r for r in list_benchmarks(home)}
    assert rows["mine"]["status"] == "extracted" and "ucf settings" in rows["mine"]["detail"]
    # the real run path
    assert main(["run", "--method", "avca", "--dataset", "mine", "--epochs", "1", "--batches-per-epoch", "2",
                 "--home", str(home), "--no-store", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data_fingerprint"] == b.fingerprint and out["features"] == "clipclap" and 0 <= out["HM"] <= 100


def test_resume_after_interruption(own_videos, models, tmp_path, capsys):
    home = tmp_path / "home"
    opts = dict(videos=str(own_videos), name="resumed", settings_from="ucf", clip=str(models[0]),
                clap=str(models[1]), home=str(home), batch_size=4, workers=1)
    done = []

    def interrupt(status):
        done.append(status)
        if done.count("extracted") == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(ExtractOptions(**opts), on_video=interrupt)
    assert not (home / "datasets" / "resumed.h5").exists()  # no half-written benchmark
    rep = _extract(_args(own_videos, models, home, "--name", "resumed", "--settings-from", "ucf"), capsys)
    assert (rep["cached"], rep["extracted"], len(rep["failed"])) == (6, 10, 2)
    # the same features as one uninterrupted run (own cache)
    _extract(_args(own_videos, models, home, "--name", "fresh", "--settings-from", "ucf", "--cache",
                   str(tmp_path / "cache2")), capsys)
    a, b = load_benchmark("resumed", home), load_benchmark("fresh", home)
    for s in STORED_SPLITS:
        x, y = a.split(s), b.split(s)
        assert list(x.video_ids) == list(y.video_ids)
        assert np.allclose(x.audio, y.audio, atol=1e-5) and np.allclose(x.video, y.video, atol=1e-5)


def test_per_second_features_run_tcaf(own_videos, models, tmp_path, capsys):
    home = tmp_path / "home"
    rep = _extract(_args(own_videos, models, home, "--name", "mine-t", "--settings-from", "ucf", "--frames",
                         "per-second"), capsys)
    assert rep["features"] == "temporal-clipclap"
    b = load_benchmark("mine-t", home)
    s = b.split("stage_1_train")
    assert b.temporal and (b.audio_dim, b.video_dim) == (24, 16)
    assert set(s.audio_len) == {1, 2} and np.array_equal(s.audio_len, s.video_len)  # 1-1.75 s: 1 or 2 steps
    assert b.sequence_crop == 0  # recorded: UCF's settings keep whole sequences (TCAF's reference mode needs them)
    assert main(["run", "--method", "tcaf", "--dataset", "mine-t", "--epochs", "1", "--batches-per-epoch", "1",
                 "--set", "batch_size=8", "--home", str(home), "--no-store", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["features"] == "temporal-clipclap"


def test_every_method_runs_on_an_extracted_benchmark(own_videos, models, tmp_path, capsys):
    from avbench.methods import available_methods
    from avbench.protocol.run import run_protocol

    home = tmp_path / "home"
    for name, frames in (("mine", "middle"), ("mine-t", "per-second")):
        _extract(_args(own_videos, models, home, "--name", name, "--settings-from", "ucf", "--frames", frames),
                 capsys)
    averaged, temporal = load_benchmark("mine", home), load_benchmark("mine-t", home)
    tiny = {"epochs": 1, "batches_per_epoch": 2, "batch_size": 8}
    shipped = {m: c for m, c in available_methods().items() if c.__module__.startswith("avbench.methods.")}
    assert len(shipped) >= 12
    for method, cls in shipped.items():
        bench = temporal if cls.inputs == "temporal" else averaged
        r = run_protocol(bench, method, seed=0, overrides=tiny)
        assert r.dataset == bench.name and np.isfinite([r.S, r.U, r.HM, r.ZSL]).all(), method


@needs_metadata()
def test_split_from_ucf_tables(models, tmp_path, capsys):
    """UCF-GZSL's split, video for video, from the metadata's per-video tables."""
    root = tmp_path / "UCF-101"
    videos = {
        "Archery": ["v_Archery_g01_c01", "v_Archery_g01_c06", "v_Archery_g01_c02", "v_Archery_g99_c99",
                    "v_BandMarching_g01_c02"],  # train, val seen, test seen, in no table, listed as another class
        "apply eye makeup": ["v_ApplyEyeMakeup_g01_c01", "v_ApplyEyeMakeup_g01_c02"],  # val unseen, test seen
        "BandMarching": ["v_BandMarching_g01_c01"],  # test unseen
        "Juggling": ["v_Juggling_g01_c01"],  # no such UCF101 class
        "PlayingGuitar": ["v_PlayingGuitar_g01_c01"],  # a UCF101 class in no split of UCF-GZSL
    }
    for i, (c, names) in enumerate(videos.items()):
        for n in names:
            write_video(root / c / f"{n}.avi", seconds=1, tone_hz=300 + 100 * i, color=(60 * i, 90, 30))
    home = tmp_path / "home"
    rep = _extract(_args(root, models, home, "--split-from", "ucf", "--metadata", str(METADATA)), capsys)
    assert rep["name"] == rep["dataset"] == "ucf-extracted"
    assert rep["unmatched_classes"] == {"Juggling": 1} and rep["classes_not_in_split"] == {"PlayingGuitar": 1}
    assert len(rep["classes_without_videos"]) == 51 - 3 and "BalanceBeam" in rep["classes_without_videos"]
    assert rep["videos_not_in_tables"] == 1
    assert len(rep["table_conflicts"]) == 1 and "v_BandMarching_g01_c02" in rep["table_conflicts"][0]
    assert rep["videos_used"] == 6 and not rep["failed"]
    b = load_benchmark("ucf-extracted", home)
    assert b.class_names == ["ApplyEyeMakeup", "Archery", "BandMarching"]
    ids = {s: sorted(b.split(s).video_ids) for s in STORED_SPLITS}
    assert ids == {
        "stage_1_train": ["v_Archery_g01_c01"],
        "stage_1_val_seen": ["v_Archery_g01_c06"],
        "stage_1_val_unseen": ["v_ApplyEyeMakeup_g01_c01"],
        "stage_2_test_seen": ["v_ApplyEyeMakeup_g01_c02", "v_Archery_g01_c02"],
        "stage_2_test_unseen": ["v_BandMarching_g01_c01"],
    }
    # the CLI's plain report names what was left out
    assert main(["data", "extract", *_args(root, models, home, "--split-from", "ucf", "--metadata", str(METADATA),
                                          "--name", "ucf-again"), "--quiet", "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "unmatched class: Juggling (1 videos)" in err and "class without videos: BalanceBeam" in err
    assert "1 classes of the dataset are in none of the benchmark's splits (1 videos left out): PlayingGuitar" in err


@needs_metadata()
def test_proportions_are_the_benchmarks():
    """The seeded split's proportions are those of the published splits (main_split)."""
    for ds, folder in (("ucf", "UCF"), ("activitynet", "ActivityNet"), ("vggsound", "VGGSound")):
        split = METADATA / folder / "class-split" / "main_split"
        n = {s: len((split / f"{s}.txt").read_text().split("\n")) - 1 for s in STORED_SPLITS}
        assert (n["stage_1_train"], n["stage_1_val_unseen"], n["stage_2_test_unseen"]) == CLASS_COUNTS[ds]
        if ds == "vggsound":  # no stage_1_train.csv
            continue
        count = {s: sum(1 for _ in csv.DictReader(open(split / f"{s}.csv"))) for s in STORED_SPLITS}
        seen_classes = {ln.lower() for ln in (split / "stage_1_train.txt").read_text().split()}
        ts_seen = sum(1 for r in csv.DictReader(open(split / "stage_2_test_seen.csv"))
                      if r["label"].lower() in seen_classes)
        total = count["stage_1_train"] + count["stage_1_val_seen"] + ts_seen
        shares = (count["stage_1_train"] / total, count["stage_1_val_seen"] / total, ts_seen / total)
        assert np.allclose(shares, SEEN_SHARES, atol=0.01)
        vu = count["stage_1_val_unseen"] / (count["stage_1_val_unseen"] + count["stage_2_test_seen"] - ts_seen)
        assert abs(vu - VAL_UNSEEN_SHARES[0]) < 0.01


def test_bad_inputs_are_one_line(own_videos, models, tmp_path, capsys):
    # a csv of path,class: relative paths from the csv's folder; a bad row names its line
    table = tmp_path / "videos.csv"
    table.write_text(f"path,class\n{own_videos}/Archery/Archery_0.mp4,Archery\nrel/x.mp4,Rain\n")
    videos, _ = find_videos(table)
    assert [(v.label, v.video_id) for v in videos] == [("Archery", "Archery_0"), ("Rain", "x")]
    assert videos[1].path == tmp_path / "rel" / "x.mp4"
    table.write_text("path,class\nonly-a-path.mp4\n")
    with pytest.raises(DataError, match=r"videos.csv: line 2: expected 'path,class'"):
        find_videos(table)
    home = str(tmp_path / "home")
    cases = [
        (["--clip", "no-such-org/no-such-clip"], "CLIP model 'no-such-org/no-such-clip' is neither a local directory "
                                                 "nor in the Hugging Face cache"),
        (["--name", "ucf-clipclap"], "--name 'ucf-clipclap' is reserved"),
        (["--settings-from", None], "own classes (no --split-from): pass --settings-from"),
        (["--split-from", "ucf"], "--split-from ucf needs --metadata DIR"),
    ]
    for extra, message in cases:
        argv = ["data", "extract", "--videos", str(own_videos), "--clap", str(models[1]), "--home", home,
                "--settings-from", "ucf", "--quiet"]
        if extra[-1] is None:
            argv = argv[:-3] + ["--quiet"]
        else:
            argv += extra
        if "--clip" not in argv:
            argv += ["--clip", str(models[0])]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("avbench: error: ") and message in err[-1], err
    with pytest.raises(DataError, match="unknown dataset 'not-extracted'"):
        load_benchmark("not-extracted", home)
    # nothing usable: one line, and the failed videos still listed in the report
    for c in ("a", "b", "c"):
        write_video(tmp_path / "silent" / c / "v.mp4", seconds=1, tone_hz=None)
    assert main(["data", "extract", *_args(tmp_path / "silent", models, home, "--settings-from", "vggsound"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "0 class(es) found" in err and "3 of 3 videos failed (listed in" in err
    report = json.loads((tmp_path / "home" / "extract" / "silent" / "report.json").read_text())
    assert [f["reason"] for f in report["failed"]] == ["no audio track"] * 3


@pytest.mark.parametrize("frames", ["middle", "per-second"])
def test_benchmark_is_written_from_the_cache_in_chunks(own_videos, models, tmp_path, capsys, monkeypatch, frames):
    """The file is streamed from the feature cache a few videos at a time (bounded memory): every row
    still holds its own video's cached features (cropped per second) and its class."""
    import avbench.data.extract as ex
    from avbench.data.encoders import Encoders
    from avbench.data.featurize import FeatureCache
    from avbench.data.layout import crop

    monkeypatch.setattr(ex, "WRITE_VIDEOS", 3)  # several chunks per split
    home = tmp_path / "home"
    rep = _extract(_args(own_videos, models, home, "--name", "chunked", "--settings-from", "ucf", "--frames", frames,
                         "--max-len", "1"), capsys)
    b = load_benchmark("chunked", home)
    assert b.fingerprint == rep["fingerprint"]
    assert b.sequence_crop == (1 if frames == "per-second" else None)  # 2-step videos were cut: recorded
    cache = FeatureCache(home / "cache" / "extract", Encoders(str(models[0]), str(models[1]), "cpu").identity(), frames,
                         1)
    path = {v.video_id: v.path for v in find_videos(own_videos)[0]}
    klass = {v.video_id: v.label for v in find_videos(own_videos)[0]}
    rows = 0
    for name in STORED_SPLITS:
        s = b.split(name)
        for i, vid in enumerate(s.video_ids):
            a, v = cache.get(path[vid])
            got_a, got_v = ((s.audio[i], s.video[i]) if not b.temporal else
                            tuple(x.values[x.offsets[i] : x.offsets[i + 1]] for x in (s.audio, s.video)))
            want_a, want_v = (crop(a, 1), crop(v, 1)) if b.temporal else (a, v)
            assert np.array_equal(got_a, want_a) and np.array_equal(got_v, want_v), (name, vid)
            assert b.class_names[s.labels[i]] == klass[vid]
            rows += 1
    assert rows == rep["usable"]  # every usable video, once


def test_a_cache_entry_gone_before_writing_is_one_line(tmp_path):
    from avbench.data.extract import write_benchmark
    from avbench.data.featurize import FeatureCache

    cache = FeatureCache(tmp_path / "cache", {"models": "none"}, "middle")
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x")
    with pytest.raises(DataError, match=r"feature cache .*a\.mp4 are gone or unreadable; run the extraction again"):
        write_benchmark(tmp_path / "b.h5", name="b", settings_from="ucf", frames="middle",
                        per_split={s: ["a"] for s in STORED_SPLITS}, classes=["A"], klass={"a": "A"},
                        paths={"a": video}, cache=cache, embeddings=np.zeros((1, 4), np.float32), source="")
    assert not (tmp_path / "b.h5").exists() and not list(tmp_path.glob(".b.h5.import-*"))


def test_decoded_clips_waiting_for_the_encoders_stay_in_bounded_memory(tmp_path, monkeypatch):
    """Large clips (a frame per second of long videos) make fewer decodes run ahead and smaller
    batches: the bytes decoded but not yet encoded stay near READ_AHEAD_BYTES, and every video
    is still extracted, in order."""
    import threading

    import avbench.data.featurize as fz
    from avbench.data.media import Clip
    from avbench.data.splits import Video

    mb = 1 << 20
    monkeypatch.setattr(fz, "READ_AHEAD_BYTES", 40 * mb)
    lock, live, peak, order = threading.Lock(), [0], [0], []

    def decode(video, rate, window_s, frames, max_steps=None):
        clip = Clip(frames=[np.zeros((mb,), np.uint8)] * 8, audio=[np.zeros(16, np.float32)], rate=16, duration=8.0)
        with lock:
            live[0] += 8 * mb
            peak[0] = max(peak[0], live[0])
        return clip

    class Enc:
        rate, window_s = 16, 1.0

        def images(self, frames):
            with lock:
                live[0] -= sum(f.nbytes for f in frames)
            return np.ones((len(frames), 4), np.float32)

        def audios(self, clips):
            return np.ones((len(clips), 3), np.float32)

    monkeypatch.setattr(fz, "_decode", decode)
    videos = []
    for i in range(40):
        p = tmp_path / "v" / f"{i}.mp4"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
        videos.append(Video(p, "A", f"v{i}"))
    cache = fz.FeatureCache(tmp_path / "cache", {"models": "stub"}, "per-second")
    ok, stats = fz.extract_features(videos, Enc(), cache, frames="per-second", batch_size=32, workers=2,
                                    on_video=order.append)
    assert ok == {v.video_id for v in videos} and stats.extracted == 40 and order == ["extracted"] * 40
    # 40 MB budget with 8 MB clips: at most budget + the decodes in flight (2 workers), never 32-clip batches
    assert peak[0] <= 40 * mb + 2 * 8 * mb, peak[0] / mb
    assert all(cache.get(v.path) is not None for v in videos)


@pytest.mark.parametrize("audio_seconds", [None, 4.0])
def test_per_second_frames_are_cut_to_the_centre_at_decoding(tmp_path, audio_seconds):
    """With max_steps, only the steps a centre crop keeps are decoded and kept: the same frames and
    audio windows as decoding everything and cropping, also when a short audio track moves the centre."""
    from avbench.data.layout import crop
    from avbench.data.media import read_clip

    path = write_video(tmp_path / "v.mp4", seconds=9, fps=4, tone_hz=500, audio_seconds=audio_seconds)
    full = read_clip(path, rate=16000, window_s=None, frames="per-second")
    assert len(full.frames) == 9 if audio_seconds is None else 4 <= len(full.frames) < 9  # (AAC pads a little)
    for max_steps in (1, 2, 3, 20):
        cut = read_clip(path, rate=16000, window_s=None, frames="per-second", max_steps=max_steps)
        frames, audio = crop(full.frames, max_steps), crop(full.audio, max_steps)
        assert len(cut.frames) == len(frames) == len(cut.audio) == len(audio) == min(max_steps, len(full.frames))
        assert all(np.array_equal(a, b) for a, b in zip(cut.frames + cut.audio, frames + audio))


def test_per_second_max_len_defaults_and_zero(tmp_path):
    """--max-len: ActivityNet settings crop per-second features to 300 steps by default, 0 keeps them whole."""
    base = dict(videos=str(tmp_path), frames="per-second", settings_from="activitynet", name="x")
    assert check_options(ExtractOptions(**base)).max_len == 300
    assert check_options(ExtractOptions(**base, max_len=0)).max_len is None
    assert check_options(ExtractOptions(**base, max_len=40)).max_len == 40
    with pytest.raises(DataError, match=r"--max-len -2: expected a number of steps \(0: keep whole sequences\)"):
        check_options(ExtractOptions(**base, max_len=-2))
