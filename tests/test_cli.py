"""The command line as a user meets it."""

import json
import subprocess
import sys

from avbench.cli import main

REQUIRED = {"method", "dataset", "protocol", "seed", "S", "U", "HM", "ZSL", "beta", "best_epoch", "text_order",
            "data_fingerprint", "seconds"}


def test_run_json_on_the_builtin_benchmark(capsys):
    code = main(["run", "--json", "--quiet", "--epochs", "2", "--batches-per-epoch", "10",
                 "--set", "batch_size=64", "--set", "hidden_encoder=64", "--seed", "1"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    res = json.loads(out[0])
    assert REQUIRED <= set(res)
    assert res["method"] == "avca" and res["dataset"] == "synthetic" and res["protocol"] == "avca2022"
    assert res["text_order"] == "by-name" and res["seed"] == 1
    assert 0 <= res["ZSL"] <= 100 and 1 <= res["best_epoch"] <= 2
    assert res["config"]["epochs"] == 2 and res["config"]["batch_size"] == 64


def test_run_prints_a_table(capsys):
    assert main(["run", "--quiet", "--epochs", "1", "--batches-per-epoch", "5", "--set", "batch_size=32",
                 "--legacy-text-order"]) == 0
    out = capsys.readouterr().out
    for col in ("S", "U", "HM", "ZSL", "best epoch", "β"):
        assert col in out
    assert "text order legacy" in out


def test_missing_dataset_says_how_to_import(capsys, tmp_path):
    assert main(["run", "--dataset", "activitynet", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "avbench data import --root DIR --dataset activitynet --features main" in err[0]


def test_bad_settings_are_one_line_errors(capsys):
    assert main(["run", "--set", "nonsense"]) == 2
    assert main(["run", "--set", "no_such=1"]) == 2
    assert main(["run", "--method", "nope"]) == 2
    assert main(["run", "--dataset", "mnist"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(ln.startswith("avbench: error: ") for ln in lines)


def test_listings(capsys):
    assert main(["methods"]) == 0
    assert "avca" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "ucf-main" in out and "not imported" in out


def test_console_script_is_installed():
    r = subprocess.run([sys.executable, "-m", "avbench.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("avbench ")
