"""Results record the machine that computed them (protocol.machine)."""

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
"""


def test_the_cpu_is_named_with_its_family_and_model(tmp_path, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    (tmp_path / "amd").write_text(AMD_VM)
    info = _cpuinfo(tmp_path / "amd")
    assert info["model"] == "1"  # the first processor's block only
    # "AMD EPYC" alone covers Zen 2, 3 and 4: the family and model numbers tell them apart
    assert cpu_name(info) == "AMD EPYC (x86_64, family 25 model 1)"
    intel = {"model name": "Intel(R) Xeon(R)  Platinum 8375C CPU @ 2.90GHz", "cpu family": "6", "model": "106"}
    assert cpu_name(intel) == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz (x86_64, family 6 model 106)"
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    (tmp_path / "arm").write_text(ARM)
    monkeypatch.setattr("platform.processor", lambda: "")
    assert cpu_name(_cpuinfo(tmp_path / "arm")) == "unknown CPU (aarch64, implementer 0x41 part 0xd0c)"
    assert _cpuinfo(tmp_path / "missing") == {}  # not Linux: the platform's own string
    monkeypatch.setattr("platform.processor", lambda: "arm")
    assert cpu_name({}) == "arm (aarch64)"


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
