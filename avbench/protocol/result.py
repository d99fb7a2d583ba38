"""The result record of a run (:class:`RunResult`): test metrics, the stage-1 choices, and what computed them.

:func:`avbench.protocol.run.run_protocol` fills it in; the results layer stores it
as a row (:func:`avbench.results.rows.row_from_result`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class RunResult:
    method: str
    dataset: str
    features: str
    protocol: str
    seed: int
    S: float  # fractions in [0, 1]
    U: float
    HM: float
    ZSL: float
    beta: float
    best_epoch: int
    stage2_epochs: int
    text_order: str
    data_fingerprint: str
    device: str
    seconds: float
    config: dict
    stage1: list[dict] = field(default_factory=list)
    stage2: list[dict] = field(default_factory=list)
    val: dict = field(default_factory=dict)
    beta_curve: dict = field(default_factory=dict)  # test S/U/HM over the β grid (for plots, not selection)
    # the budget the protocol would use for this method and benchmark without --epochs/--set
    # (a run trained on less is a reduced-budget result; the leaderboard marks it)
    default_budget: dict = field(default_factory=dict)
    threads: int = 0  # torch intra-op threads the run used (0: not recorded)
    protocol_mode: str = "platform"  # or "reference": the method's own code's protocol
    protocol_options: dict = field(default_factory=dict)  # options the protocol mode resolved to
    data_access: dict = field(default_factory=dict)  # stage -> resident | streamed (never changes a number)
    # the machine and torch build that computed the numbers (protocol.machine): another CPU model or
    # torch build changes the last bits, so a seed reproduces to the bit only there ("": not recorded)
    hardware: str = ""
    torch_version: str = ""
    # the code of the process that computed them, where it differs from the one storing them (a sweep's
    # final on another node: set there, by search.trial); None: the storing process's code
    git_revision: str | None = None
    avbench_version: str | None = None

    def summary(self) -> dict:
        pct = {k: round(100 * getattr(self, k), 4) for k in ("S", "U", "HM", "ZSL")}
        return {
            "method": self.method,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "protocol_mode": self.protocol_mode,
            "protocol_options": dict(self.protocol_options),
            "seed": self.seed,
            **pct,
            "beta": round(self.beta, 6),
            "best_epoch": self.best_epoch,
            "text_order": self.text_order,
            "data_fingerprint": self.data_fingerprint,
            "seconds": round(self.seconds, 2),
        }

    def to_dict(self) -> dict:
        return asdict(self)
