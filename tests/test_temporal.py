"""Per-second (temporal) features: the TCAF layout, stored without padding, cropping, and averaged views."""

import pickle

import numpy as np
import pytest

from avbench.cli import main
from avbench.data.benchmark import Benchmark
from avbench.data.layout import crop, import_layout, import_to_file
from avbench.data.registry import load_benchmark
from avbench.data.synthetic import SyntheticSpec, synthetic_benchmark, write_avca_layout
from avbench.errors import ConfigError, DataError
from avbench.methods import Method, register
from avbench.protocol.run import run_protocol

SPEC = SyntheticSpec(n_seen=4, n_val_unseen=2, n_test_unseen=2, train_per_class=5, val_seen_per_class=3,
                     val_unseen_per_class=4, test_seen_per_class=3, test_unseen_per_class=4, audio_dim=8,
                     video_dim=6, temporal_len=(2, 7))
FEAT = "main_features_non_averaged"


@pytest.fixture
def layout(tmp_path):
    write_avca_layout(tmp_path, spec=SPEC, features=FEAT)
    return tmp_path


def test_temporal_layout_round_trip(layout, tmp_path):
    home = tmp_path / "home"
    assert main(["data", "import", "--root", str(layout), "--dataset", "ucf", "--features", "temporal-main",
                 "--home", str(home)]) == 0
    b = load_benchmark("ucf-temporal-main", home)
    assert b.temporal and b.features == "temporal-main"
    s = b.split("stage_1_train")
    assert s.audio.ndim == 3 and s.audio.shape[1] == 7 and s.video.shape[2] == 6
    # stored without padding: the values are exactly the sequences' steps
    assert len(s.audio.values) == int(s.audio_len.sum())
    # every stored sequence equals the file's; a padded batch is zero after each length
    path = layout / "UCF" / "features" / FEAT / "audio" / "stage_1_train" / "Class001.pkl"
    with open(path, "rb") as fh:
        d = pickle.load(fh)
    for seq, name in zip(d["features"], d["video_names"]):
        i = list(s.video_ids).index(name)
        n = s.audio_len[i]
        assert n == len(seq) and np.array_equal(s.audio.sequence(i), seq)
        padded, lens = s.audio.padded([i, 0])
        assert lens[0] == n and np.array_equal(padded[0, :n], seq) and not padded[0, n:].any()


def test_long_sequences_are_centre_cropped():
    x = np.arange(10, dtype=np.float32)[:, None]
    assert crop(x, 4)[:, 0].tolist() == [3, 4, 5, 6] and crop(x[:3], 4)[:, 0].tolist() == [0, 1, 2]
    assert crop(x, None) is x


def test_import_max_len_crops_and_zero_keeps_whole_sequences(layout, tmp_path):
    lens = {m: import_layout(layout, "ucf", "temporal-main", max_len=m).split("stage_1_train").audio_len
            for m in (3, 0, None)}
    assert lens[3].max() == 3 and lens[0].max() == 7  # 0: no crop (TCAF's reference mode on ActivityNet)
    assert np.array_equal(lens[0], lens[None])  # UCF: no default crop
    # the crop is recorded, in memory and in the file (TCAF's reference mode needs whole sequences)
    assert [import_layout(layout, "ucf", "temporal-main", max_len=m).sequence_crop for m in (3, 0, None)] == [3, 0, 0]
    # a crop that cut nothing keeps the data of --max-len 0 (same fingerprint): recorded as whole
    same = import_layout(layout, "ucf", "temporal-main", max_len=7)
    assert same.sequence_crop == 0 and same.fingerprint == import_layout(layout, "ucf", "temporal-main").fingerprint
    written = import_to_file(layout, "ucf", "temporal-main", tmp_path / "b.h5", max_len=3)
    assert Benchmark.open(written.path).sequence_crop == 3
    assert synthetic_benchmark().sequence_crop is None  # averaged features: no sequences
    with pytest.raises(DataError, match=r"--max-len -1: expected a number of steps \(0: keep whole sequences\)"):
        import_layout(layout, "ucf", "temporal-main", max_len=-1)


def test_bad_temporal_files_are_named(layout):
    path = layout / "UCF" / "features" / FEAT / "video" / "stage_1_val_seen" / "Class002.pkl"
    with open(path, "rb") as fh:
        d = pickle.load(fh)
    d["features"][1] = d["features"][1].copy()
    d["features"][1][0, 0] = np.nan
    with open(path, "wb") as fh:
        pickle.dump(d, fh)
    with pytest.raises(DataError, match=r"Class002.pkl: field 'features'\[1\].*NaN"):
        import_layout(layout, "ucf", "temporal-main")
    with open(path, "wb") as fh:
        pickle.dump({"features": d["features"]}, fh)
    with pytest.raises(DataError, match=r"Class002.pkl: no field 'video_names'"):
        import_layout(layout, "ucf", "temporal-main")


def test_averaged_methods_see_the_time_average():
    b = synthetic_benchmark(SyntheticSpec(**{**SPEC.__dict__, "class_names": None}), variant="synthetic-temporal")
    s = b.split("stage_1_train")
    avg = s.averaged()
    i = 3
    assert np.allclose(avg.audio[i], s.audio.sequence(i).mean(0), atol=1e-6)
    r = run_protocol(b, "avca", seed=0, overrides={"epochs": 1, "batches_per_epoch": 3, "batch_size": 16,
                                                  "hidden_encoder": 16, "hidden_decoder": 16})
    assert np.isfinite([r.S, r.U, r.HM, r.ZSL]).all()


@register("test-temporal-mean")
class _TemporalMean(Method):
    """A minimal temporal-input method: masked mean over time, then a linear map."""

    description = "test only"
    paper = "test only"
    inputs = "temporal"

    def __init__(self, dims, config):
        super().__init__(dims, config)
        import torch

        self.W = torch.nn.Linear(dims.audio + dims.video, dims.text)

    def _embed(self, a, v, al, vl):
        import torch

        def mean(x, n):
            m = (torch.arange(x.shape[1], device=x.device)[None, :] < n[:, None]).float()
            return (x * m[..., None]).sum(1) / n[:, None].clamp_min(1)

        return self.W(torch.cat([mean(a, al), mean(v, vl)], 1))

    def loss(self, batch):
        assert batch.audio.ndim == 3 and batch.audio_len is not None and batch.neg_video_len is not None
        logits = self._embed(batch.audio, batch.video, batch.audio_len, batch.video_len) @ batch.text.T
        import torch.nn.functional as F

        return F.cross_entropy(logits, batch.label), {}

    def distances(self, audio, video, text, audio_len=None, video_len=None):
        assert audio_len is not None and audio.ndim == 3
        return -(self._embed(audio, video, audio_len, video_len) @ text.T)


def test_temporal_methods_get_sequences_and_lengths():
    b = synthetic_benchmark(SyntheticSpec(**{**SPEC.__dict__, "class_names": None}), variant="synthetic-temporal")
    r = run_protocol(b, "test-temporal-mean", seed=0, overrides={"epochs": 2, "batches_per_epoch": 5, "batch_size": 16})
    assert np.isfinite([r.S, r.U, r.HM, r.ZSL]).all()
    with pytest.raises(ConfigError, match="needs per-second"):
        run_protocol(synthetic_benchmark(SyntheticSpec(**{**SPEC.__dict__, "temporal_len": None, "class_names": None})),
                     "test-temporal-mean", seed=0, overrides={"epochs": 1})


def test_reference_mode_refuses_a_cropped_import(layout, tmp_path, capsys):
    """TCAF's code reads whole sequences: `avbench run --protocol reference` on an import cropped with
    --max-len says so in one line; the same import runs in the platform mode."""
    home = tmp_path / "home"
    assert main(["data", "import", "--root", str(layout), "--dataset", "ucf", "--features", "temporal-main",
                 "--max-len", "3", "--home", str(home)]) == 0
    run = ["run", "--method", "tcaf", "--dataset", "ucf-temporal-main", "--home", str(home), "--no-store", "--quiet",
           "--epochs", "1", "--batches-per-epoch", "1", "--set", "batch_size=8"]
    capsys.readouterr()
    assert main([*run, "--protocol", "reference"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs whole sequences" in err and "centre-cropped to 3 steps" in err and len(err.splitlines()) == 1
    assert main(run) == 0
    from avbench.data.registry import list_benchmarks  # `avbench datasets` says how the sequences are stored

    detail = {r["name"]: r["detail"] for r in list_benchmarks(home)}["ucf-temporal-main"]
    assert "sequences centre-cropped to 3 steps" in detail


def test_a_file_without_its_crop_record_is_not_whole(layout, tmp_path, capsys):
    """A per-second file written before files recorded their crop: crop unknown, shown so, refused by TCAF's
    reference mode; a malformed record is a one-line error naming the file."""
    import h5py

    home = tmp_path / "home"
    assert main(["data", "import", "--root", str(layout), "--dataset", "ucf", "--features", "temporal-main",
                 "--home", str(home)]) == 0
    path = home / "datasets" / "ucf-temporal-main.h5"
    assert load_benchmark("ucf-temporal-main", home).sequence_crop == 0
    with h5py.File(path, "r+") as f:
        del f.attrs["x_max_len"]
    b = load_benchmark("ucf-temporal-main", home)
    assert b.sequence_crop is None
    from avbench.data.registry import list_benchmarks
    from avbench.protocol.presets import resolve_protocol

    assert "sequence crop not recorded" in {r["name"]: r["detail"] for r in list_benchmarks(home)}["ucf-temporal-main"]
    with pytest.raises(DataError, match=rf"\({path}\): .*does not record whether its sequences were cropped"):
        resolve_protocol("tcaf", "reference", b.settings_dataset, b.features, benchmark=b)
    with h5py.File(path, "r+") as f:
        f.attrs["x_max_len"] = "abc"
    with pytest.raises(DataError, match=rf"^{path}: attribute x_max_len='abc': expected a number of steps"):
        load_benchmark("ucf-temporal-main", home)


def test_activitynet_reference_recipe_end_to_end(tmp_path, capsys):
    """TCAF's reference mode on ActivityNet as the README gives it: the default import (centre 300 steps) is
    refused; the --max-len 0 import runs, with the code's test collator (eval_crop=300) and 60-step windows."""
    import json

    spec = SyntheticSpec(**{**SPEC.__dict__, "temporal_len": (280, 330)})
    layout = write_avca_layout(tmp_path / "layout", folder="ActivityNet", spec=spec, features=FEAT,
                               text_file="word_embeddings_activity_normed.npy")
    for home, extra in (("cropped", []), ("whole", ["--max-len", "0"])):
        assert main(["data", "import", "--root", str(layout), "--dataset", "activitynet", "--features",
                     "temporal-main", "--home", str(tmp_path / home), *extra]) == 0
    assert [load_benchmark("activitynet-temporal-main", tmp_path / h).sequence_crop
            for h in ("cropped", "whole")] == [300, 0]
    run = ["run", "--method", "tcaf", "--dataset", "activitynet-temporal-main", "--protocol", "reference",
           "--no-store", "--quiet", "--json", "--epochs", "1", "--batches-per-epoch", "1"]
    for k, v in dict(batch_size=8, depth=1, heads=2, dim_head=8, dim=16, mlp_dim=16, embed_dim=8, hidden_encoder=16,
                     hidden_decoder=16).items():
        run += ["--set", f"{k}={v}"]
    capsys.readouterr()
    assert main([*run, "--home", str(tmp_path / "cropped")]) == 2
    assert "has sequences centre-cropped to 300 steps" in capsys.readouterr().err
    assert main([*run, "--home", str(tmp_path / "whole")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["protocol_mode"] == "reference"
    c = res["config"]
    assert (c["eval_crop"], c["train_crop"], c["crop_rule"]) == (300, 60, "reference")
