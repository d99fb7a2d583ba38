"""The ``avbench`` command line.

    avbench run [--method avca] [--dataset synthetic] [--seed 0] [--protocol avca2022|reference] ...
    avbench data import --root DIR --dataset ucf --features main
    avbench datasets
    avbench methods
    avbench leaderboard [--dataset D ...] [--metric HM] [--format table|md|csv|tex|html] [--out DIR] [--reported]
    avbench results
    avbench plot metric|beta|epochs [--result ID] --out DIR

Errors are one line on stderr (exit 2); progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import sys

from avbench import __version__
from avbench.errors import AvbenchError, ConfigError


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _console(stderr: bool = False):
    from rich.console import Console

    con = Console(stderr=stderr, highlight=False)
    if not con.is_terminal:  # piped or captured: do not squeeze wide tables into 80 columns
        con = Console(stderr=stderr, highlight=False, width=max(con.width, 160))
    return con


# ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from avbench.cli.data import cmd_datasets, cmd_extract, cmd_import, cmd_methods, cmd_verify
    from avbench.cli.results import cmd_leaderboard, cmd_plot, cmd_results
    from avbench.cli.run import cmd_run
    from avbench.cli.search import cmd_suite, cmd_sweep, cmd_ui
    from avbench.data.layout import FEATURES
    from avbench.protocol.presets import DEFAULT_PRESET, PROTOCOLS

    p = argparse.ArgumentParser(prog="avbench", description="Audio-visual GZSL benchmark platform")
    p.add_argument("--version", action="version", version=f"avbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", default=None, help="avbench's data home (default $AVBENCH_HOME or ~/.avbench)")
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=None, help="results store URL (default $AVBENCH_DB or sqlite in the data home)")

    r = sub.add_parser("run", parents=[home, db], help="train and evaluate one method through the two-stage protocol")
    r.add_argument("--method", default="avca", type=str.lower)
    r.add_argument("--dataset", default="synthetic", help="synthetic, or an imported name: ucf, ucf-cls, activitynet, ...")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--protocol", default=DEFAULT_PRESET, choices=PROTOCOLS,
                   help="a preset (one protocol for every method) or reference (each method's own code's protocol)")
    r.add_argument("--epochs", type=int, default=None, help="epoch budget of stage 1 (default: method/dataset default)")
    r.add_argument("--batches-per-epoch", type=int, default=None)
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any method or protocol setting")
    r.add_argument("--legacy-text-order", action="store_true", help="the public code's misaligned class embeddings")
    r.add_argument("--device", default="auto", help="cpu, cuda, or auto: cuda when available (default)")
    r.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1): results are bit-reproducible for a given count, not across "
                        "counts, so the count is part of the run's settings")
    r.add_argument("--memory-budget", default=None, metavar="SIZE",
                   help="feature bytes a stage may keep in memory (e.g. 4GB); larger splits are streamed from the "
                        "file (default: a quarter of the machine's memory; on a GPU at most half of its memory); "
                        "never changes a result")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--no-store", action="store_true", help="do not write the result to the results store")
    r.add_argument("--entry", default=None,
                   help="the leaderboard entry this result joins (default: one entry per configuration, budget and "
                        "data); an entry holds one configuration on one data version")
    r.add_argument("--progress", action="store_true", help="progress bars even when stderr is not a terminal")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("data", help="benchmark data")
    dsub = d.add_subparsers(dest="data_command", required=True)
    i = dsub.add_parser("import", parents=[home], help="import a directory in the public AVCA-GZSL layout")
    i.add_argument("--root", required=True, help="folder holding UCF/, ActivityNet/, VGGSound/ (or one of them)")
    i.add_argument("--dataset", required=True, choices=["ucf", "activitynet", "vggsound"])
    i.add_argument("--features", default="main", choices=list(FEATURES),
                   help="main | cls (averaged) | temporal-main | temporal-cls (per-second sequences, TCAF)")
    i.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="how feature values are stored (float16 halves the file; part of the fingerprint)")
    i.add_argument("--max-len", type=int, default=None,
                   help="temporal only: centre-crop longer sequences to this many steps (default: 300 for "
                        "ActivityNet, none otherwise; 0 keeps whole sequences, as TCAF's code on ActivityNet needs)")
    i.set_defaults(func=cmd_import)
    x = dsub.add_parser("extract", parents=[home], help="a benchmark from raw videos: CLIP video, CLAP audio, CLIP‖CLAP "
                                                        "text features (pip install -e \".[extract]\")")
    x.add_argument("--videos", required=True, help="folder of <Class>/<video> files, or a csv of path,class")
    x.add_argument("--name", "--dataset", dest="name", default=None,
                   help="the new benchmark's name (default: <split-from>-extracted, or the videos folder's name)")
    x.add_argument("--split-from", default=None, choices=["ucf", "activitynet", "vggsound"],
                   help="apply this published benchmark's class split (needs --metadata)")
    x.add_argument("--metadata", default=None, help="the AVCA-GZSL class-split metadata (folder holding UCF/, ...)")
    x.add_argument("--split", default="main", choices=["main", "cls"], help="which published split (default main)")
    x.add_argument("--video-split", default=None, choices=["tables", "seeded"],
                   help="videos by the metadata's per-video tables (default when present) or by seed")
    x.add_argument("--settings-from", default=None, choices=["ucf", "activitynet", "vggsound"],
                   help="published settings the methods use (default: --split-from; required for own classes)")
    x.add_argument("--seed", type=int, default=0, help="seed of the split of own classes / seeded videos")
    x.add_argument("--frames", default="middle", choices=["middle", "per-second"],
                   help="middle frame (ClipClap) or one frame and 1-s audio window per second (temporal methods)")
    x.add_argument("--max-len", type=int, default=None, help="per-second: centre-crop to this many steps "
                                                               "(default 300 with ActivityNet settings; 0: none)")
    x.add_argument("--clip", default=None, help="CLIP model: a local folder or a name in the Hugging Face cache "
                                                "(default openai/clip-vit-base-patch32)")
    x.add_argument("--clap", default=None, help="CLAP model: a local folder or a name in the Hugging Face cache "
                                                "(default laion/larger_clap_general)")
    x.add_argument("--templates", default=None, choices=["action", "sound", "plain"],
                   help="prompt templates of the class embeddings (default: action for ucf/activitynet, sound for "
                        "vggsound settings)")
    x.add_argument("--device", default="auto", help="cpu, cuda, or auto: cuda when available (default)")
    x.add_argument("--batch-size", type=int, default=32)
    x.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    x.add_argument("--cache", default=None, help="per-video feature cache (default <home>/cache/extract)")
    x.add_argument("--json", action="store_true", help="print the report as one JSON object")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    x.set_defaults(func=cmd_extract)

    v = dsub.add_parser("verify", parents=[home], help="recompute each benchmark file's fingerprint from its "
                                                        "values and compare it with the one it records")
    v.add_argument("--dataset", action="append", default=None,
                   help="an imported or extracted benchmark (repeatable; default: every one in the data home)")
    v.set_defaults(func=cmd_verify)

    ds = sub.add_parser("datasets", parents=[home], help="list datasets")
    ds.set_defaults(func=cmd_datasets)
    m = sub.add_parser("methods", help="list methods")
    m.set_defaults(func=cmd_methods)

    from avbench.results.formats import FORMATS
    from avbench.results.leaderboard import METRICS

    sw = sub.add_parser("sweep", parents=[home, db], help="hyperparameter sweep (Ray Tune + Optuna), finals to the store")
    sw.add_argument("--method", required=True, type=str.lower)
    sw.add_argument("--dataset", required=True)
    sw.add_argument("--trials", type=int, default=20)
    sw.add_argument("--seeds", type=int, default=3,
                    help="final runs of the best configuration, on the seeds after the search seeds (K..K+S-1)")
    sw.add_argument("--search-seeds", type=int, default=1,
                    help="seeds every trial trains with (0..K-1), reporting their mean validation metrics")
    sw.add_argument("--max-concurrent", type=int, default=None)
    sw.add_argument("--gpus-per-trial", type=float, default=0.25, help="used only when CUDA is present")
    sw.add_argument("--cpus-per-trial", type=float, default=1.0)
    sw.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    sw.add_argument("--storage", default=None, help="Optuna storage URL (default: a journal file in the data home)")
    sw.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite in the data home)")
    sw.add_argument("--name", default=None, help="sweep name (default method-dataset-protocol); rerun to resume")
    sw.add_argument("--protocol", default=DEFAULT_PRESET, choices=PROTOCOLS,
                    help="a preset (one protocol for every method) or reference (each method's own code's protocol)")
    sw.add_argument("--epochs", type=int, default=None)
    sw.add_argument("--batches-per-epoch", type=int, default=None)
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fixed settings (not searched)")
    sw.add_argument("--legacy-text-order", action="store_true")
    sw.add_argument("--memory-budget", default=None, metavar="SIZE",
                    help="feature bytes each trial may keep in memory (default: the node's default budget shared by "
                         "the concurrent trials); larger splits are streamed from the file")
    sw.add_argument("--json", action="store_true")
    sw.add_argument("--quiet", action="store_true")
    sw.set_defaults(func=cmd_sweep)

    su = sub.add_parser("suite", help="a whole benchmark (leaderboards/suites/*.yaml): its sweeps in one Ray job")
    susub = su.add_subparsers(dest="suite_command", required=True)
    for what, text in (("run", "run or resume every sweep of the suite, then its leaderboard"),
                       ("status", "each sweep's state, without running anything")):
        sp = susub.add_parser(what, parents=[home, db], help=text)
        sp.add_argument("suite", help="a suite name (leaderboards/suites/NAME.yaml) or a YAML file")
        sp.add_argument("--storage", default=None, help="Optuna storage URL (default: journal files in the data home)")
        sp.add_argument("--json", action="store_true")
        if what == "run":
            sp.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
            sp.add_argument("--tracking-uri", default=None,
                            help="MLflow tracking URI (default: sqlite in the data home)")
            sp.add_argument("--out", default=None, help="leaderboard folder (default <home>/suites/<suite>)")
            sp.add_argument("--log-every", type=float, default=30.0,
                            help="seconds between progress lines when stderr is not a terminal")
            sp.add_argument("--quiet", action="store_true")
        sp.set_defaults(func=cmd_suite)

    ui = sub.add_parser("ui", parents=[home], help="the MLflow UI on avbench's tracking store")
    ui.add_argument("--tracking-uri", default=None)
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)

    lbp = sub.add_parser("leaderboard", parents=[home, db], help="the leaderboard across methods and benchmarks")
    lbp.add_argument("--dataset", action="append", default=[], help="only these datasets (repeatable)")
    lbp.add_argument("--metric", default="HM", choices=METRICS)
    lbp.add_argument("--format", default="table", choices=FORMATS)
    lbp.add_argument("--out", default=None, help="write leaderboard.<format> files into this folder")
    lbp.add_argument("--reported", action="store_true", help="show published numbers beside the reproduced ones")
    lbp.add_argument("--entry", action="append", default=[],
                     help="show these entries (repeatable; default: per method and dataset the latest full-budget "
                          "sweep entry, else the latest entry)")
    lbp.set_defaults(func=cmd_leaderboard)

    rs = sub.add_parser("results", parents=[home, db], help="list stored results (or delete an entry)")
    rs.add_argument("--dataset", action="append", default=[])
    rs.add_argument("--method", action="append", default=[], type=str.lower)
    rs.add_argument("--entry", action="append", default=[], help="only these entries (repeatable)")
    rs.set_defaults(func=cmd_results, results_command="list")
    rsub = rs.add_subparsers(dest="results_command")
    rdel = rsub.add_parser("delete", parents=[home, db], help="remove every result of one entry")
    rdel.add_argument("--entry", dest="entry_name", required=True)
    rdel.set_defaults(func=cmd_results, results_command="delete")

    pl = sub.add_parser("plot", parents=[home, db], help="figures (PNG and SVG)")
    pl.add_argument("kind", choices=["metric", "beta", "epochs", "cd"],
                    help="metric: per method and dataset with CI bars; beta: S vs U over β for --result; "
                         "epochs: validation HM per epoch for --result; cd: critical-difference diagram of the "
                         "methods' mean ranks across datasets (Friedman + Nemenyi)")
    pl.add_argument("--entry", action="append", default=[], help="metric/cd: only these entries (repeatable)")
    pl.add_argument("--result", type=int, default=None, help="result id (see `avbench results`)")
    pl.add_argument("--metric", default="HM", choices=METRICS)
    pl.add_argument("--dataset", action="append", default=[])
    pl.add_argument("--out", default="plots", help="output folder (default ./plots)")
    pl.set_defaults(func=cmd_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AvbenchError as e:
        print(f"avbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avbench: interrupted", file=sys.stderr)
        return 130
