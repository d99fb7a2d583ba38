"""Protocol presets and protocol-level settings.

A preset fixes the parts of the two-stage protocol that differ between the
public codes (FIELD_NOTES §3):

- ``avca2022``: the stage-2 model is the one at the best stage-1 epoch (the AVCA
  code trains the full budget with a checkpoint per epoch and tests the checkpoint
  at that epoch; training exactly that many epochs gives the same model without
  the wasted epochs); β grid 0..3 step 0.2 (16 values).
- ``clipclap2024``: stage 2 trains best_epoch + 1 epochs (TCAF / ClipClap); β grid
  0..5 in 76 values.

In both, stage 2 follows the learning-rate schedule that stage 1 chose on
validation (epoch by epoch): stage 2 has no validation data, so stepping a
scheduler there could only use training or test data.
"""

from __future__ import annotations

from dataclasses import dataclass

from avbench.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    beta_stop: float
    beta_num: int
    extra_stage2_epochs: int  # stage 2 trains best_epoch + this many epochs
    description: str


PRESETS = {
    "avca2022": Preset("avca2022", 3.0, 16, 0, "AVCA (CVPR 2022): stage-2 model at the best stage-1 epoch; β 0..3 step 0.2"),
    "clipclap2024": Preset("clipclap2024", 5.0, 76, 1, "TCAF/ClipClap: stage 2 trains best_epoch+1 epochs; β 0..5, 76 values"),
}
DEFAULT_PRESET = "avca2022"

# Settings the protocol's trainer reads; a method's defaults may override them.
PROTOCOL_DEFAULTS = {
    "epochs": 50,
    "batches_per_epoch": 500,
    "batch_size": 256,
    "lr": 1e-3,
    "lr_patience": 3,
    "lr_factor": 0.1,
    "eval_batch_size": 4096,
    "negatives": "batch",  # or "independent" (the reference's sampling); see protocol.trainer
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; available: {', '.join(PRESETS)}") from None
