"""Method registry: built-in method files, third-party plugins via entry points, search spaces."""

import subprocess
import sys
import textwrap

import pytest

from avbench.data.synthetic import synthetic_benchmark
from avbench.errors import ConfigError
from avbench.methods import available_methods, get_method
from avbench.protocol.config import resolve_config
from avbench.protocol.run import run_protocol
from avbench.search.space import load_space

from conftest import REPO, SMALL

PLUGIN = '''
"""A one-file avbench method shipped by a third-party package."""
import torch
from avbench.methods import Method, register


@register("demo-plugin")
class DemoPlugin(Method):
    description = "linear map of [video, audio] to the text space (plugin demo)"
    paper = "nobody, a plugin test, 2026"

    @classmethod
    def defaults(cls, dataset, features):
        return {"margin": 0.5}

    def __init__(self, dims, config):
        super().__init__(dims, config)
        self.W = torch.nn.Linear(dims.audio + dims.video, dims.text)

    def embed(self, a, v):
        return torch.nn.functional.normalize(self.W(torch.cat([v, a], 1)), dim=1)

    def loss(self, batch):
        x = self.embed(batch.audio, batch.video)
        s = x @ batch.text.T
        pos = s.gather(1, batch.label[:, None])
        hinge = (self.config["margin"] + s - pos).clamp_min(0).sum(1) - self.config["margin"]
        return hinge.mean(), {}

    def distances(self, audio, video, text):
        return -(self.embed(audio, video) @ text.T)
'''


@pytest.fixture
def plugin_path(tmp_path):
    pkg = tmp_path / "avbench_demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "avbench_demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: avbench-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[avbench.methods]\ndemo = avbench_demo_plugin\n")
    return tmp_path


def test_a_plugin_distribution_adds_a_method(plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_path))
    assert "demo-plugin" in available_methods(refresh=True)
    r = run_protocol(synthetic_benchmark(SMALL), "demo-plugin", seed=0,
                     overrides={"epochs": 3, "batches_per_epoch": 20, "batch_size": 64, "lr": 0.01})
    assert r.method == "demo-plugin" and r.ZSL > 3 / SMALL.n_test_unseen  # 3 x ZSL chance
    out = subprocess.run([sys.executable, "-m", "avbench.cli", "methods"], capture_output=True, text=True,
                         env={"PYTHONPATH": f"{plugin_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and "demo-plugin" in out.stdout and "plugin demo" in out.stdout


def test_every_method_has_a_description_a_paper_and_a_valid_search_space():
    methods = available_methods()
    assert "avca" in methods
    for name, cls in methods.items():
        if cls.__module__.startswith("avbench.methods."):
            assert cls.description and cls.paper, name
            known = set(resolve_config(name, "ucf", "main", {}))
            for ds in ("ucf", "activitynet", "vggsound"):
                space = load_space(name, ds, known=known)
                assert space and set(space) <= known


def test_malformed_search_space_names_the_key(tmp_path):
    (tmp_path / "avca.yaml").write_text("method: avca\nparameters:\n  lr: {type: float, low: 0.1, high: 0.01}\n")
    with pytest.raises(ConfigError, match=r"avca.yaml: parameters.lr: low=0.1 must be below high=0.01"):
        load_space("avca", folder=tmp_path)
    (tmp_path / "avca.yaml").write_text("method: avca\nparameters:\n  lrr: {type: float, low: 0.1, high: 1}\n")
    with pytest.raises(ConfigError, match=r"parameters.lrr: not a setting of avca"):
        load_space("avca", folder=tmp_path)
    (tmp_path / "avca.yaml").write_text("method: avca\nparameters:\n  depth: {type: grid, low: 1, high: 3}\n")
    with pytest.raises(ConfigError, match=r"parameters.depth: type 'grid'"):
        load_space("avca", folder=tmp_path)


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: .*avca"):
        get_method("no-such-method")
