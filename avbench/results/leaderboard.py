"""Turn the results store into the table researchers put in their papers: which results each
cell shows, their statistics and marks (``results.formats`` writes the boards out).

Rows are methods, column groups are datasets. A table holds results of one protocol
(preset and mode: platform or reference), one feature set and one text order.

A cell shows one *entry* (see ``results.store``) of one configuration on one data
version under one set of protocol options: the mean ± std over its seeds with n, and
the 95 % confidence interval of that mean (Student's t, ``results.stats.mean_ci``; a
single seed has neither std nor CI). Per (method, dataset) the cell shown is, by default, the latest full-budget
sweep entry, else the latest full-budget entry, else the latest reduced-budget entry
(marked; a reduced-budget entry never displaces a full-budget one); ``entries``
selects explicitly. The best configuration is never chosen by its test numbers.

Marks, explained in every format's footnote:

- ``≈``: not significantly different from the best method of the dataset
  (``results.stats.versus_best``: Welch's t-test, Holm-corrected);
- ``†``: the cell's code is not one recoverable version: its results come from several
  code revisions (git revisions; the avbench version where it ran from an installed
  package), or from a checkout with uncommitted changes (``<revision>-dirty``);
- ``¶``: the cell's results come from several machines (CPU or GPU model, torch
  build; ``protocol.machine``), or some did not record theirs: its seeds reproduce to
  the bit only each on its own;
- ``‡``: reduced budget (fewer epochs or batches than the protocol's default);
- ``§``: the dataset column mixes data versions (fingerprints) across methods;
- ``◊``: the cell's protocol rules (β rule, epoch selection, stage-2 learning rate)
  are not those of the rest of its table: a result of an earlier avbench version
  (the footnote names both).

Methods are ranked per dataset (average rank on ties) and by their mean rank across
the table's datasets, which only a method with a result on every one of them gets (its
ranks among those methods). Published numbers (``--reported``) are shown in every
table of their feature set, with a Δ only where the table's protocol and text order
are the source's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from avbench.errors import ConfigError
from avbench.protocol.presets import PLATFORM_OPTIONS, PROTOCOL_OPTIONS
from avbench.results.stats import CI_NAME, TEST_NAME, mean_ci, ranks, versus_best
from avbench.results.provenance import code, machine
from avbench.results.rows import config_hash, options_key

METRICS = ("HM", "ZSL", "S", "U")
DATASET_ORDER = ("vggsound", "ucf", "activitynet")
DATASET_TITLES = {"vggsound": "VGGSound-GZSL", "ucf": "UCF-GZSL", "activitynet": "ActivityNet-GZSL"}
ROW_COLUMNS = ["id", "entry", "entry_kind", "method", "dataset", "features", "protocol", "protocol_mode",
               "text_order", "config_hash", "data_fingerprint", "git_revision", "avbench_version", "reduced_budget",
               "seed", "search_seeds", "hardware", "torch_version", "created_at", "protocol_options"]
MARKS = {
    "tied": ("≈", f"not significantly different from the best of the dataset ({TEST_NAME})"),
    "revisions": ("†", "results of several code revisions, or of uncommitted code (-dirty), in one cell"),
    "machines": ("¶", "results of several machines (CPU or GPU model, torch build) in one cell"),
    "reduced": ("‡", "reduced budget: fewer epochs or batches than the protocol's default"),
    "data": ("§", "the dataset's cells come from different data versions (fingerprints)"),
    "rules": ("◊", "protocol rules other than the rest of the table's (a result of an earlier avbench version)"),
}


def rules_of(options: dict | None) -> str:
    """A result's protocol-level rules in words; a rule it does not record is the platform's (a version
    before the rule existed followed it, e.g. stage2_lr=replay)."""
    options = options or {}
    return ", ".join(f"{k}={options.get(k, PLATFORM_OPTIONS[k])}" for k in PROTOCOL_OPTIONS)


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float
    rank: float = float("nan")
    entry: str = ""
    entry_kind: str = "run"
    config_hash: str = ""
    data_fingerprint: str = ""
    revisions: list = field(default_factory=list)
    machines: list = field(default_factory=list)  # "<hardware>, torch <version>" of its results
    reduced: bool = False
    significance: str = "untested"  # best | tied | worse | untested
    p_value: float | None = None
    values: list = field(default_factory=list)
    rules: str = ""  # rules_of(its protocol options)
    other_rules: bool = False  # not the rules of the rest of its table

    @property
    def code_unpinned(self) -> bool:
        """Its code is not one version a reader can check out: several revisions, or uncommitted changes."""
        return len(self.revisions) > 1 or any(r.endswith("-dirty") for r in self.revisions)

    @property
    def marks(self) -> str:
        m = ""
        if self.significance == "tied":
            m += MARKS["tied"][0]
        if self.code_unpinned:
            m += MARKS["revisions"][0]
        if len(self.machines) > 1:
            m += MARKS["machines"][0]
        if self.reduced:
            m += MARKS["reduced"][0]
        if self.other_rules:
            m += MARKS["rules"][0]
        return m


@dataclass
class Board:
    protocol: str
    features: str
    text_order: str
    metric: str
    datasets: list[str]
    methods: list[str]
    cells: dict[tuple[str, str], Cell]
    mean_rank: dict[str, float]
    reported: dict[tuple[str, str], float] = field(default_factory=dict)
    reported_sources: list[str] = field(default_factory=list)
    protocol_mode: str = "platform"
    reported_match: dict[tuple[str, str], bool] = field(default_factory=dict)  # source's protocol/text order = ours
    mixed_data: list[str] = field(default_factory=list)  # datasets whose cells differ in data version

    @property
    def title(self) -> str:
        mode = "" if self.protocol_mode == "platform" else f" ({self.protocol_mode})"
        return (
            f"{self.metric} (×100) · protocol {self.protocol}{mode} · features {self.features} · "
            f"text order {self.text_order}"
        )

    def used_marks(self) -> list[str]:
        used = []
        cells = self.cells.values()
        if any(c.significance == "tied" for c in cells):
            used.append("tied")
        if any(c.code_unpinned for c in cells):
            used.append("revisions")
        if any(len(c.machines) > 1 for c in cells):
            used.append("machines")
        if any(c.reduced for c in cells):
            used.append("reduced")
        if self.mixed_data:
            used.append("data")
        if any(c.other_rules for c in cells):
            used.append("rules")
        return used

    @property
    def note(self) -> str:
        return self.footnote()

    def footnote(self, with_ci: bool = True) -> str:
        """What the table shows and its marks (``with_ci=False``: for a format without the CI column)."""
        s = "mean ± std over seeds (n)" + (f", {CI_NAME}" if with_ci else "")
        s += ("; rank per dataset; mean rank across datasets (methods with every dataset); "
              f"significance: {TEST_NAME}, ≈ marks methods not significantly different from the best")
        for key in self.used_marks():
            if key != "tied":
                s += f"; {MARKS[key][0]} {MARKS[key][1]}"
        if self.mixed_data:
            s += f" ({', '.join(self.mixed_data)})"
        if "rules" in self.used_marks():
            usual = next(c.rules for c in self.cells.values() if not c.other_rules)
            others = sorted({c.rules for c in self.cells.values() if c.other_rules})
            s += f" (the table's: {usual}; ◊: {' | '.join(others)})"
        revs = sorted({r for c in self.cells.values() if c.code_unpinned for r in c.revisions})
        if revs:
            s += f" (revisions {', '.join(revs)})"
        machines = sorted({x for c in self.cells.values() for x in c.machines})
        if machines:  # what a reader needs to reproduce a seed to the bit (see protocol.machine)
            s += f"; computed on {' · '.join(machines)}"
        if self.reported_sources:
            s += "; reported: " + "; ".join(self.reported_sources)
        return s

    def delta(self, method: str, dataset: str) -> float | None:
        if not self.reported_match.get((method, dataset), False):
            return None
        c, r = self.cells.get((method, dataset)), self.reported.get((method, dataset))
        return None if c is None or r is None else c.mean - r


def _dataset_sort_key(d: str):
    return (DATASET_ORDER.index(d) if d in DATASET_ORDER else len(DATASET_ORDER), d)


def _stamp(r: dict):
    return (r["created_at"], r.get("id", 0))


# what makes two results one measurement, whatever entry holds them: with the seed, the same numbers
# (protocol_options: the protocol-level rules, e.g. stage2_lr, which the configuration hash does not cover)
IDENTITY = ("config_hash", "data_fingerprint", "protocol", "protocol_mode", "features", "text_order", "method",
            "dataset", "protocol_options")


def identity(r: dict) -> tuple:
    return tuple(options_key(r.get(k)) if k == "protocol_options"
                 else r.get(k) or ("platform" if k == "protocol_mode" else None) for k in IDENTITY)


# settings that say how a run executes, not which configuration it runs: a seed that chose a configuration
# in a sweep chose it whatever thread count (or evaluation chunk) a later run of it uses
EXECUTION_SETTINGS = ("threads", "eval_batch_size")
# protocol options that act after stage 1, where a sweep's search seeds choose the configuration
STAGE2_OPTIONS = ("stage2_lr",)


def choice_hash(config: dict) -> str:
    """The configuration's hash without :data:`EXECUTION_SETTINGS`."""
    return config_hash({k: v for k, v in config.items() if k not in EXECUTION_SETTINGS})


def choice(r: dict) -> tuple:
    """What a sweep's search seed chose: :func:`identity` with the configuration hashed without
    :data:`EXECUTION_SETTINGS` (``choice_hash``, or from the row's ``config``; rows with neither: the
    hash as stored) and the protocol options without :data:`STAGE2_OPTIONS`."""
    key = identity(r)
    config = r.get("config")
    chash = r.get("choice_hash") or (choice_hash(config) if isinstance(config, dict) else key[0])
    options = {k: v for k, v in (r.get("protocol_options") or {}).items() if k not in STAGE2_OPTIONS}
    return (chash, *key[1:-1], options_key(options))


def board_rows(store, metric: str = "HM", **filters) -> list[dict]:
    """The store's rows as the leaderboard reads them (:data:`ROW_COLUMNS` and ``metric``), each with
    the :func:`choice_hash` of its configuration (computed once per distinct configuration)."""
    rows = store.rows(columns=ROW_COLUMNS + [metric], **filters)
    chosen = {h: choice_hash(c) for h, c in store.configs().items() if isinstance(c, dict)}
    for r in rows:
        r["choice_hash"] = chosen.get(r["config_hash"])
    return rows


def searched_by(rows: list[dict]) -> dict[tuple, dict[int, set[str]]]:
    """Per configuration (:func:`choice`), the seeds that chose it and the entries of the sweeps that
    searched on them (a sweep's finals record their search seeds)."""
    out: dict[tuple, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        for s in r.get("search_seeds") or ():
            out[choice(r)][int(s)].add(r["entry"])
    return out


def choose_groups(rows: list[dict], entries: list[str] | None = None) -> dict[tuple, list[dict]]:
    """The rows each leaderboard cell shows, keyed (protocol, mode, features, text order, method, dataset).

    Rows are grouped by entry, configuration, data version and protocol options (a group
    never mixes them). A result on a seed that chose its configuration is left out: in a sweep's
    entry, the search seeds of the sweeps that wrote it (its own; another sweep's that
    wrote the same entry and chose the same configuration); in an ``avbench run``
    entry, the search seeds of every sweep in the store whose finals ran that
    configuration on that data under that protocol, whatever its thread count (a run of
    a sweep-chosen configuration on a search seed repeats the run that won the search). A sweep's own
    finals stay unbiased whatever another sweep searched on. Per cell, the latest
    full-budget sweep group, else the latest full-budget group, else the latest
    reduced-budget group; ``entries`` restricts the groups that compete to those entries'.
    """
    searched = searched_by(rows)  # every sweep in the store, shown or not, may have chosen a configuration
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if entries and r["entry"] not in entries:
            continue
        groups[(r["entry"], *identity(r))].append(r)
    for key, members in list(groups.items()):  # results on seeds that chose the configuration: biased, never shown
        if members[0].get("entry_kind") == "sweep":
            chose = {int(s) for x in members for s in (x.get("search_seeds") or ())}
        else:
            chose = searched.get(choice(members[0]), {})  # one configuration per group (identity)
        groups[key] = [x for x in members if x["seed"] not in chose]
        if not groups[key]:
            del groups[key]
    chosen: dict[tuple, tuple] = {}
    for key, members in groups.items():
        _, _, _, p, mode, f, t, m, d, _ = key  # entry, then IDENTITY
        first = members[0]
        full = not any(bool(x.get("reduced_budget")) for x in members)
        priority = (full, first.get("entry_kind") == "sweep" and full, max(_stamp(x) for x in members))
        cell = (p, mode, f, t, m, d)
        if cell not in chosen or priority > chosen[cell][0]:
            chosen[cell] = (priority, members)
    return {cell: members for cell, (_, members) in chosen.items()}


def compile_boards(
    rows: list[dict],
    metric: str = "HM",
    datasets: list[str] | None = None,
    reported: list[dict] | None = None,
    entries: list[str] | None = None,
) -> list[Board]:
    """Boards from store rows (dicts with the ``ROW_COLUMNS`` and the metric column)."""
    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r}: expected one of {', '.join(METRICS)}")
    want = set(datasets) if datasets else None
    if want:
        rows = [r for r in rows if r["dataset"] in want]
    if entries:
        known = {r["entry"] for r in rows}
        missing = [e for e in entries if e not in known]
        if missing:
            raise ConfigError(f"--entry {missing[0]!r}: no such entry in the store (see `avbench results`)")
    tables: dict[tuple, dict] = defaultdict(dict)
    for (p, mode, f, t, m, d), members in choose_groups(rows, entries).items():
        members = sorted(members, key=lambda r: r["seed"])
        v = np.asarray([float(r[metric]) for r in members], dtype=np.float64)
        lo, hi = mean_ci(v)
        first = members[0]
        tables[(p, mode, f, t)][(m, d)] = Cell(
            float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v), lo, hi,
            entry=first["entry"], entry_kind=first.get("entry_kind", "run"), config_hash=first["config_hash"],
            data_fingerprint=first["data_fingerprint"],
            revisions=sorted({code(r) for r in members}),
            machines=sorted({machine(r) for r in members}),
            reduced=any(bool(r.get("reduced_budget")) for r in members), values=[float(x) for x in v],
            rules=rules_of(first.get("protocol_options")),
        )

    boards = []
    for (p, mode, f, t), cells in sorted(tables.items()):
        ds = sorted({d for _, d in cells}, key=_dataset_sort_key)
        mixed = []
        for d in ds:
            here = {m: c for (m, dd), c in cells.items() if dd == d}
            for m, rk in ranks({m: c.mean for m, c in here.items()}).items():
                here[m].rank = rk
            for m, (mark, pval) in versus_best({m: np.asarray(c.values) for m, c in here.items()}).items():
                here[m].significance, here[m].p_value = mark, pval
            if len({c.data_fingerprint for c in here.values()}) > 1:
                mixed.append(d)
        rules = Counter(c.rules for c in cells.values())
        if len(rules) > 1:  # the most common rules are the table's (a tie: the first in sorted order)
            usual = max(sorted(rules), key=lambda k: rules[k])
            for c in cells.values():
                c.other_rules = c.rules != usual
        methods = sorted({m for m, _ in cells})
        # mean rank: methods with a result on every dataset, ranked among themselves (a method
        # missing a hard dataset would otherwise rank on its easy ones only)
        complete = [m for m in methods if all((m, d) in cells for d in ds)]
        per_ds = [ranks({m: cells[(m, d)].mean for m in complete}) for d in ds] if complete else []
        mean_rank = {m: float(np.mean([r[m] for r in per_ds])) for m in complete}
        board = Board(p, f, t, metric, ds, methods, cells, mean_rank, protocol_mode=mode, mixed_data=mixed)
        if reported:
            attach_reported(board, reported, want)
        board.methods = sorted(board.methods, key=lambda m: (board.mean_rank.get(m, float("inf")), m))
        boards.append(board)
    if not boards and reported:  # nothing reproduced yet: still show the published numbers
        for f in sorted({r["features"] for r in reported}):
            b = Board("-", f, "-", metric, [], [], {}, {})
            attach_reported(b, reported, want)
            boards.append(b)
    return boards


def attach_reported(board: Board, reported: list[dict], want: set | None) -> None:
    """Published numbers of the board's feature set; a Δ only where protocol, mode and text order match."""
    for src in reported:
        if src["features"] != board.features:
            continue
        comparable = (
            src.get("protocol") == board.protocol
            and src.get("text_order") == board.text_order
            and src.get("protocol_mode", board.protocol_mode) == board.protocol_mode
        )
        label = f"{src['source']} (protocol {src.get('protocol', '?')}, text order {src.get('text_order', '?')})"
        if not comparable:
            label += " [another protocol or text order than this table: shown for reference, no Δ]"
        board.reported_sources.append(label)
        for m, per_ds in src["results"].items():
            for d, metrics in per_ds.items():
                if want and d not in want or board.metric not in metrics:
                    continue
                board.reported[(m, d)] = float(metrics[board.metric])
                board.reported_match[(m, d)] = comparable
                if d not in board.datasets:
                    board.datasets.append(d)
                if m not in board.methods:
                    board.methods.append(m)
    board.datasets.sort(key=_dataset_sort_key)
