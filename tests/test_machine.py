"""Results record the machine that computed them (protocol.machine)."""

import os

import pytest
import torch

from avbench.protocol.machine import _cpuinfo, cpu_name, hardware

AMD_VM = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
CPU implementer\t: 0x41
CPU part\t: 0xd0c

Hardware\t: BCM2835
"""

POWER = """processor\t: 0
cpu\t\t: POWER9 (architected), altivec supported
clock\t\t: 2900.000000MHz
"""

S390 = """vendor_id       : IBM/S390
# processors    : 4
processor 0: version = FF,  identification = 0133E8,  machine = 8561
"""


def _read(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return _cpuinfo(tmp_path / name)


def test_the_cpu_is_named_with_what_tells_models_apart(tmp_path, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    info = _read(tmp_path, "amd", AMD_VM)
    assert info["model"] == "1"  # the first processor's value
    # "AMD EPYC" alone covers Zen 2, 3 and 4: the family and model numbers tell them apart
    assert cpu_name(info) == "AMD EPYC (x86_64, family 25 model 1 stepping 1)"
    intel = {"model name": "Intel(R) Xeon(R)  Platinum 8375C CPU @ 2.90GHz", "cpu family": "6", "model": "106"}
    assert cpu_name(intel) == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz (x86_64, family 6 model 106)"
    monkeypatch.setattr("platform.processor", lambda: "")
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert cpu_name(_read(tmp_path, "arm", ARM)) == "BCM2835 (aarch64, implementer 0x41 part 0xd0c)"
    monkeypatch.setattr("platform.machine", lambda: "ppc64le")
    assert cpu_name(_read(tmp_path, "power", POWER)) == "POWER9 (architected), altivec supported (ppc64le)"
    monkeypatch.setattr("platform.machine", lambda: "s390x")
    assert cpu_name(_read(tmp_path, "s390", S390)) == "IBM/S390 (s390x, machine 8561)"
    assert _cpuinfo(tmp_path / "missing") == {}  # not Linux: the system's own name
    monkeypatch.setattr("platform.system", lambda: "Darwin")
    monkeypatch.setattr("avbench.protocol.machine._darwin_brand", lambda: "Apple M3 Pro")
    monkeypatch.setattr("platform.machine", lambda: "arm64")
    assert cpu_name({}) == "Apple M3 Pro (arm64)"
    monkeypatch.setattr("avbench.protocol.machine._darwin_brand", lambda: "")
    monkeypatch.setattr("platform.processor", lambda: "arm")
    assert cpu_name({}) == "arm (arm64)"


def test_a_cpu_result_records_the_kernels_torch_dispatches_to():
    here = hardware(torch.device("cpu"))
    assert here.startswith(cpu_name()) and here.endswith(torch.backends.cpu.get_cpu_capability())


def test_a_run_gives_back_the_callers_thread_count_and_deterministic_mode():
    from avbench.data.registry import load_benchmark
    from avbench.protocol.run import run_protocol

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    tiny = {"epochs": 1, "batches_per_epoch": 2, "batch_size": 16, "hidden_encoder": 16, "threads": 1}
    seen = []

    def on_epoch(stage, rec, epochs):
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))
        if stage == "stage 2":
            raise KeyboardInterrupt  # a run stopped half-way gives them back too

    try:
        torch.set_num_threads(2)
        torch.use_deterministic_algorithms(False)
        r = run_protocol(load_benchmark("synthetic"), "avca", overrides=tiny)
        assert r.threads == 1  # the run's own setting, recorded
        assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (2, False)
        with pytest.raises(KeyboardInterrupt):
            run_protocol(load_benchmark("synthetic"), "avca", overrides=tiny, on_epoch=on_epoch)
        assert seen == [(1, True), (1, True)]  # inside the run: its settings
        assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (2, False)
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])


def test_a_cuda_runs_cublas_workspace_setting_is_given_back(monkeypatch):
    from avbench.protocol.machine import make_deterministic, torch_settings_restored

    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    try:
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
        with torch_settings_restored():
            make_deterministic(1, torch.device("cuda"))  # sets flags and the environment only
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
            assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the caller's own value stays
        with torch_settings_restored():
            make_deterministic(1, torch.device("cuda"))
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
        assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])
