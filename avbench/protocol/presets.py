"""Protocol presets, protocol modes and protocol-level settings.

A preset fixes the parts of the two-stage protocol that differ between the public
codes (FIELD_NOTES §3): the β grid and how long stage 2 trains. Each is described
by the code lines it follows (``source``). In all three codes stage 2 yields the
model after exactly as many epochs as the selected stage-1 model had (1-based
``best_epoch``): AVCA tests the per-epoch stage-2 checkpoint at that epoch,
TCAF and ClipClap train ``best_epoch + 1`` epochs where their ``best_epoch`` counts
from 0. Training exactly that many epochs gives the same model without the wasted
epochs.

Stage 2 has no validation data of its own (validation videos are training data
then), so its learning rate follows one of two rules (protocol option ``stage2_lr``):

- ``replay`` (the platform mode): the schedule that stage 1 chose on validation,
  epoch by epoch (FIELD_NOTES §3: no choice from data the model trains on);
- ``val-plateau`` (every reference protocol): as the public codes, ReduceLROnPlateau
  steps on the validation HM of each stage-2 epoch, the stage-1 validation videos
  and classes scored as in stage 1, though the model now trains on them (AVCA-GZSL
  src/train.py train L27-28 for the baselines' optimiser, L29-30 for AVCA's own
  (src/model_improvements.py L194, L204-205), its HM from the metric on the validation split,
  ``val_all_dataset``, main.py L224-225, in stage 2 too; TCAF-GZSL src/train.py train
  L31, metric main.py L236 on ``val_all_dataset`` and a loader of it (L194-195, named
  ``final_test_loader``); ClipClap-GZSL src/train.py train L36, main.py L247, L202-203).
  The test splits stay out of reach in both.

The two differ only if either schedule cuts the learning rate within the stage-2
epochs.

Protocol modes (``--protocol``):

- a preset name (``avca2022``, the default, ``tcaf2022``, ``clipclap2024``): the
  platform mode, one protocol for every method: the preset, the β of the
  predicting output, the first best epoch, and each method's platform defaults;
- ``reference``: each method's own code, to the letter as far as avbench
  reproduces it (``Method.reference_protocol``): its preset, its β rule, its
  epoch-selection rule and the settings that restore its code's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from avbench.errors import ConfigError, DataError


@dataclass(frozen=True)
class Preset:
    name: str
    beta_stop: float
    beta_num: int
    description: str
    source: str  # the public code lines it follows

    def stage2_epochs(self, best_epoch: int) -> int:
        """Epochs stage 2 trains, given the 1-based best stage-1 epoch (the same in all three codes)."""
        if int(best_epoch) < 1:
            raise ConfigError(f"best epoch {best_epoch!r}: expected a 1-based epoch number")
        return int(best_epoch)


PRESETS = {
    "avca2022": Preset(
        "avca2022",
        3.0,
        16,
        "AVCA (CVPR 2022) code: stage-2 model after the best stage-1 epoch; β 0..3 step 0.2",
        "ExplainableML/AVCA-GZSL: get_evaluation.py get_evaluation L95-97 (stage-1 model *_score.pt gives "
        "epoch_A, saved as epoch + 1 by src/utils.py save_best_model L84; the test loads the stage-2 "
        "checkpoint *_ckpt_{epoch_A - 1}, saved per 0-based epoch by src/train.py train L23-25: the model "
        "after epoch_A epochs); β grid src/utils.py get_best_evaluation L221-225 (linspace(0, 3, 16))",
    ),
    "tcaf2022": Preset(
        "tcaf2022",
        3.0,
        16,
        "TCAF (ECCV 2022) code: stage 2 trains the best stage-1 epoch count; β 0..3 step 0.2",
        "ExplainableML/TCAF-GZSL: main.py run L38-40 (args.epochs = best_epoch + 1, best_epoch 0-based "
        "from src/utils.py check_best_score L174-182); get_evaluation.py get_evaluation L122-125 tests the "
        "last stage-2 checkpoint (*_ckpt_{epoch_A - 1}). When the first epoch is best, `if best_epoch:` is "
        "false and stage 2 trains the full budget, but the test still loads checkpoint 0: the same model "
        "as one epoch. β grid src/utils.py get_best_evaluation L278-281 (linspace(0, 3, 16))",
    ),
    "clipclap2024": Preset(
        "clipclap2024",
        5.0,
        76,
        "ClipClap-GZSL (CVPRW 2024) code: stage 2 trains the best stage-1 epoch count; β 0..5, 76 values",
        "dkurzend/ClipClap-GZSL: main.py run L42-44 (args.epochs = best_epoch + 1, best_epoch 0-based from "
        "src/utils.py check_best_score L208-216); get_evaluation.py get_evaluation L126-127 tests "
        "*_ckpt_{epoch_A - 1}; β grid src/utils.py get_best_evaluation L312-315 (linspace(0, 5, 76))",
    ),
}
DEFAULT_PRESET = "avca2022"
REFERENCE = "reference"
PROTOCOLS = (*sorted(PRESETS), REFERENCE)  # what --protocol accepts

# Protocol-level options a reference protocol may set (read by the protocol, not the
# method); every other option is a setting of the resolved config.
PROTOCOL_OPTIONS = ("beta_rule", "selection", "stage2_lr")
PLATFORM_OPTIONS = {"beta_rule": "predictor", "selection": "first-best", "stage2_lr": "replay"}
STAGE2_LR = ("replay", "val-plateau")  # the stage-2 learning-rate rules (see the module docstring)

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
    # torch CPU threads of the run: part of the settings because CPU results are bit-reproducible
    # for a given thread count but not across counts (reductions split by thread); see protocol.machine
    "threads": 1,
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol preset {name!r}; available: {', '.join(PRESETS)}") from None


def resolve_protocol(method: str, name: str, dataset: str, features: str, benchmark=None) -> tuple[str, dict, str]:
    """(preset name, options, mode) for ``--protocol name`` with this method and benchmark.

    A preset name gives the platform mode: that preset and no options. ``reference``
    gives the method's reference protocol: its preset and its options, the
    protocol-level ones (``beta_rule``, ``selection``, ``stage2_lr``) included. A search calls this to
    learn the preset its results are stored under and the options to apply
    (``resolve_config(..., protocol_options=options)``). Given the ``benchmark`` (a
    ``Benchmark``) it also checks that the data can follow the reference: a reference
    that reads whole sequences refuses a benchmark cropped when it was written.
    """
    if name in PRESETS:
        return name, {}, "platform"
    if name != REFERENCE:
        raise ConfigError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOLS)}")
    from avbench.methods import get_method
    from avbench.protocol.metrics import BETA_RULES

    cls = get_method(method)
    ref = cls.reference_protocol(dataset, features)
    if ref.preset not in PRESETS:
        raise ConfigError(f"method {cls.name}: reference preset {ref.preset!r} is not one of {', '.join(PRESETS)}")
    if ref.beta_rule not in BETA_RULES:
        raise ConfigError(f"method {cls.name}: reference beta_rule {ref.beta_rule!r}: expected one of "
                          f"{', '.join(BETA_RULES)}")
    if ref.selection not in SELECTIONS:
        raise ConfigError(f"method {cls.name}: reference selection {ref.selection!r}: expected one of "
                          f"{', '.join(SELECTIONS)}")
    if ref.stage2_lr not in STAGE2_LR:
        raise ConfigError(f"method {cls.name}: reference stage2_lr {ref.stage2_lr!r}: expected one of "
                          f"{', '.join(STAGE2_LR)}")
    if ref.whole_sequences and benchmark is not None and benchmark.temporal:
        _require_whole_sequences(cls.name, ref, benchmark)
    options = {"beta_rule": ref.beta_rule, "selection": ref.selection, "stage2_lr": ref.stage2_lr, **ref.options}
    return ref.preset, options, "reference"


def _require_whole_sequences(method: str, ref, benchmark) -> None:
    crop = benchmark.sequence_crop
    if crop == 0:
        return
    where = f"benchmark {benchmark.name}" + (f" ({benchmark.path})" if benchmark.path else "")
    if crop is None:
        state, again = "does not record whether its sequences were cropped (written before files recorded it)", \
            "write it again"
    else:
        state, again = f"has sequences centre-cropped to {crop} steps", "write it again (another data version)"
    raise DataError(
        f"{where}: the reference protocol of {method} needs whole sequences, as its code reads them "
        f"[{ref.sources.get('whole_sequences', ref.code)}], and this file {state}; {again} with --max-len 0 "
        f"(avbench data import or data extract), or run the platform mode with --protocol {ref.preset}"
    )


def reference_sources(method: str, dataset: str, features: str) -> dict:
    """The public code line behind each part of a method's reference protocol (for docs and reports)."""
    from avbench.methods import get_method

    cls = get_method(method)
    ref = cls.reference_protocol(dataset, features)
    return {"code": ref.code, "preset": PRESETS[ref.preset].source, **ref.sources}


# Stage-1 epoch selection rules (see protocol.run.select).
SELECTIONS = ("first-best", "zero-is-unset")
