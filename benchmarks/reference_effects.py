"""The effect of each reference-protocol option on the synthetic benchmark, over seeds.

For each method with a reference protocol, runs the whole protocol (both stages, the
test evaluation) for several seeds under these variants:

- ``platform``: the method's reference preset in the platform mode (no option);
- ``+<setting>``: the same with one declared setting of the reference protocol;
- ``+stage2_lr=val-plateau alone``: the reference preset with the codes' stage-2
  learning-rate rule (ReduceLROnPlateau on validation HM) and nothing else;
- ``rules``: the reference protocol's β rule, selection rule and stage-2 LR rule
  alone (no setting);
- ``reference``: ``--protocol reference`` (everything);
- ``pre-fix``: where the issue names a preset change, the preset as it was before
  (clipclap2024 training best_epoch + 1 stage-2 epochs; for TCAF that preset, which
  tcaf.py pointed users to).

Prints one JSON line per run and, at the end, a table of mean ± std (×100) per
variant. ``rules`` and ``pre-fix`` patch the method's declared reference protocol
or the preset for the duration of one run (measurement only).

``--set KEY=VALUE`` adds a setting to every run, e.g. the cls features' step rates and
a training crop for TCAF (``--set rate_audio=0.96 --set rate_video=0.64 --set
train_crop=4``), without which its ``eval_positions`` and ``crop_rule`` options have
nothing to act on (the synthetic sequences have 1-s steps and are not cropped).

Usage: python benchmarks/reference_effects.py [--methods avca cjme ...] [--seeds 3]
       [--epochs 6] [--batches 50] [--set KEY=VALUE ...] [--variants PREFIX ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import time

import torch

from avbench.cli import _parse_sets
from avbench.data.synthetic import synthetic_benchmark
from avbench.errors import ConfigError
from avbench.methods import get_method
from avbench.protocol import presets
from avbench.protocol.presets import PROTOCOL_OPTIONS, resolve_protocol
from avbench.protocol.run import run_protocol

VARIANT_OF = {"clipclap": "synthetic-clipclap", "tcaf": "synthetic-temporal"}
# The published learning rates of ClipClap and TCAF (5e-5..1e-4) are set for thousands of steps and learn
# nothing in a few hundred; lr 1e-3 here, and for TCAF a small transformer (its published depth 5 with
# 8 heads of 64 is too slow on a CPU), as the tests use
EXTRA = {"clipclap": {"lr": 1e-3},
         "tcaf": {"depth": 2, "heads": 2, "dim_head": 32, "dim": 64, "mlp_dim": 64, "embed_dim": 16,
                  "hidden_encoder": 64, "hidden_decoder": 64, "lr": 1e-3}}


@contextlib.contextmanager
def rules_only(method: str, **changes):
    """The method's reference protocol without its settings (β rule, selection, stage-2 LR rule and preset
    only), with ``changes`` (e.g. the platform's β rule and selection, to keep the stage-2 LR rule alone)."""
    cls = get_method(method)
    original = cls.__dict__.get("reference_protocol")
    declared = cls.reference_protocol

    def patched(klass, dataset, features):
        return dataclasses.replace(declared(dataset, features), options={}, **changes)

    cls.reference_protocol = classmethod(patched)
    try:
        yield
    finally:
        if original is None:
            del cls.reference_protocol
        else:
            cls.reference_protocol = original


@contextlib.contextmanager
def stage2_plus_one():
    """The clipclap2024 preset before the fix: stage 2 trained best_epoch + 1 epochs."""
    original = presets.Preset.stage2_epochs
    presets.Preset.stage2_epochs = lambda self, best: int(best) + 1
    try:
        yield
    finally:
        presets.Preset.stage2_epochs = original


def variants(method: str, dataset: str, features: str):
    preset, options, _ = resolve_protocol(method, "reference", dataset, features)
    fixed = {k: v for k, v in options.items() if k not in PROTOCOL_OPTIONS}
    out = [("platform", preset, {}, contextlib.nullcontext)]
    if method == "clipclap":
        out.append(("pre-fix (clipclap2024 +1 epoch)", "clipclap2024", {}, stage2_plus_one))
    if method == "tcaf":
        out.append(("pre-fix (clipclap2024 +1 epoch, as tcaf.py advised)", "clipclap2024", {}, stage2_plus_one))
    for k, v in fixed.items():
        out.append((f"+{k}={v:.6g}" if isinstance(v, float) else f"+{k}={v}", preset, {k: v}, contextlib.nullcontext))
    out.append((f"+stage2_lr={options['stage2_lr']} alone", "reference", {},
                lambda: rules_only(method, beta_rule="predictor", selection="first-best")))
    out.append(("rules (β " + options["beta_rule"] + ", " + options["selection"] + ", stage 2 LR "
                + options["stage2_lr"] + ")", "reference", {}, lambda: rules_only(method)))
    out.append(("reference", "reference", {}, contextlib.nullcontext))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["clipclap", "avgzslnet", "cjme", "avca", "tcaf"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for every run (repeatable), as `avbench run --set`")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    ap.add_argument("--variants", nargs="+", default=None, metavar="PREFIX",
                    help="run only the variants whose name starts with one of these (e.g. platform +stage2_lr)")
    args = ap.parse_args()
    try:
        extra = _parse_sets(args.set)
    except ConfigError as e:
        ap.error(str(e))
    rows = []
    for method in args.methods:
        bench = synthetic_benchmark(variant=VARIANT_OF.get(method, "synthetic"))
        budget = {"epochs": args.epochs, "batches_per_epoch": args.batches, **EXTRA.get(method, {}), **extra}
        for name, protocol, settings, ctx in variants(method, bench.settings_dataset, bench.features):
            if args.variants and not name.startswith(tuple(args.variants)):
                continue
            for seed in range(args.seeds):
                t = time.perf_counter()
                with ctx():
                    r = run_protocol(bench, method, protocol=protocol, seed=seed, overrides={**budget, **settings})
                row = {"method": method, "variant": name, "seed": seed, "protocol": r.protocol,
                       "mode": r.protocol_mode, **{k: round(100 * getattr(r, k), 3) for k in ("S", "U", "HM", "ZSL")},
                       "beta": round(r.beta, 6), "best_epoch": r.best_epoch, "stage2_epochs": r.stage2_epochs,
                       "seconds": round(time.perf_counter() - t, 1)}
                rows.append(row)
                line = json.dumps(row)
                print(line, flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(line + "\n")
    print(f"\nmean ± std over {args.seeds} seeds (×100); budget {args.epochs} epochs × {args.batches} batches"
          + (f"; settings {extra}" if extra else ""))
    keys = []
    for r in rows:
        if (r["method"], r["variant"]) not in keys:
            keys.append((r["method"], r["variant"]))
    for method, name in keys:
        sel = [r for r in rows if (r["method"], r["variant"]) == (method, name)]

        def ms(k):
            v = [r[k] for r in sel]
            return f"{statistics.mean(v):6.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:5.2f}"

        print(f"{method:10s} {name:48s} HM {ms('HM')}  S {ms('S')}  U {ms('U')}  ZSL {ms('ZSL')}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
