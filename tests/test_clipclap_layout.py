"""The ClipClap layout: CLIP/CLAP vectors per video in pickles, class embeddings CLIP text ‖ CLAP text."""

import pickle

import numpy as np
import pytest

from avbench.cli import main
from avbench.data.layout import import_layout
from avbench.data.registry import load_benchmark
from avbench.data.synthetic import SyntheticSpec, generate, write_avca_layout
from avbench.errors import DataError

SPEC = SyntheticSpec(n_seen=4, n_val_unseen=2, n_test_unseen=2, train_per_class=5, val_seen_per_class=3,
                     val_unseen_per_class=4, test_seen_per_class=3, test_unseen_per_class=4, audio_dim=1024,
                     video_dim=512, text_dim=1536)


@pytest.mark.parametrize("folder, ds", [("UCF", "ucf"), ("VGGSound", "vggsound")])
def test_clipclap_layout_imports(tmp_path, folder, ds):
    write_avca_layout(tmp_path / "dl", folder, spec=SPEC, clipclap=True)
    home = tmp_path / "home"
    assert main(["data", "import", "--root", str(tmp_path / "dl"), "--dataset", ds, "--features", "clipclap",
                 "--home", str(home)]) == 0
    b = load_benchmark(f"{ds}-clipclap", home)
    assert (b.audio_dim, b.video_dim, b.text_dim, b.temporal) == (1024, 512, 1536, False)
    g = generate(SPEC)
    # by name: each class gets CLIP text ‖ CLAP text of its own name
    assert np.allclose(b.embeddings("by-name"), g["embeddings"])
    tr = b.split("stage_1_train")
    i = list(tr.video_ids).index(g["splits"]["stage_1_train"].video_ids[7])
    assert np.allclose(tr.audio[i], g["splits"]["stage_1_train"].audio[7])


def test_clipclap_files_must_hold_one_vector_per_video(tmp_path):
    base = write_avca_layout(tmp_path, "UCF", spec=SPEC, clipclap=True)
    path = base / "features" / "cls_features_non_averaged" / "video" / "stage_1_train" / "Class000.pkl"
    with open(path, "rb") as fh:
        d = pickle.load(fh)
    d["features"][0] = np.zeros((3, 512), np.float32)
    with open(path, "wb") as fh:
        pickle.dump(d, fh)
    with pytest.raises(DataError, match=r"Class000.pkl: field 'features'\[0\].*expected \[D\]"):
        import_layout(tmp_path, "ucf", "clipclap")
