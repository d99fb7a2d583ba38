"""Progress of a running suite: one line per sweep, a live table on a terminal, plain lines in a log."""

from __future__ import annotations

import time

from avbench.search.suite import Planned


class SweepState:
    def __init__(self, item: Planned):
        self.item = item
        self.phase = "skipped" if item.skip else "waiting"
        self.error: str | None = item.skip
        self.finals = 0
        self.summary: dict | None = None
        self.t0 = self.t1 = None
        self.traceback: str | None = None

    def counts(self) -> tuple[dict, float | None]:
        from avbench.search.tracking import _ACTIVE

        active = _ACTIVE.get(self.item.name)
        view = active[1] if active else None
        counts = getattr(view, "counts", None) or {}
        best = getattr(view, "best", None)
        if self.summary:
            counts = {"done": self.summary["trials"], "running": 0}
            best = self.summary["best_val_hm"]
        return counts, best

    def line(self) -> dict:
        counts, best = self.counts()
        spec = self.item.spec
        total = spec.trials if spec else 0
        phase = self.phase
        if phase == "search" and counts.get("done", 0) >= total:
            phase = "finals"
        finals = "-"
        if spec:
            stored = len(self.summary["finals"]) + len(self.summary["finals_already_stored"]) if self.summary \
                else self.finals
            finals = f"{stored}/{spec.seeds}"
        return {
            "sweep": self.item.name, "state": phase,
            "trials": f"{counts.get('done', 0)}/{total} done, {counts.get('running', 0)} running" if spec else "-",
            "best": "-" if best is None else f"{best:.2f}", "finals": finals,
            "note": (self.error or "").splitlines()[0][:120] if self.error else "",
        }


class SuiteView:
    """One line per sweep: a rich live table on a terminal, periodic plain lines otherwise."""

    def __init__(self, title: str, states: list[SweepState], console=None, live: bool = True,
                 log_every: float = 30.0):
        self.title, self.states, self.console = title, states, console
        self.live, self.log_every, self.t0, self.last_log = None, log_every, time.time(), 0.0
        if live and console is not None:
            from rich.live import Live

            self.live = Live(self.render(), console=console, refresh_per_second=1, transient=False)

    def render(self):
        from rich.table import Table

        done = sum(s.phase in ("done", "skipped", "failed") for s in self.states)
        t = Table(title=f"{self.title} · {done}/{len(self.states)} sweeps ended · {time.time() - self.t0:.0f} s")
        for col in ("sweep", "state", "trials", "best val HM", "finals", "note"):
            t.add_column(col, justify="right" if col in ("best val HM", "finals") else "left")
        for s in self.states:
            line = s.line()
            t.add_row(line["sweep"], line["state"], line["trials"], line["best"], line["finals"], line["note"])
        return t

    def plain(self) -> str:
        done = sum(s.phase in ("done", "skipped", "failed") for s in self.states)
        lines = [f"[{time.time() - self.t0:.0f} s] {self.title}: {done}/{len(self.states)} sweeps ended"]
        for s in self.states:
            if s.phase == "skipped":
                continue
            x = s.line()
            lines.append(f"  {x['sweep']}: {x['state']}; trials {x['trials']}; best val HM {x['best']}; "
                         f"finals {x['finals']}" + (f"; {x['note']}" if x["note"] else ""))
        return "\n".join(lines)

    def tick(self, force: bool = False) -> None:
        if self.live is not None:
            self.live.update(self.render())
        elif self.console is not None and (force or time.time() - self.last_log >= self.log_every):
            self.last_log = time.time()
            self.console.print(self.plain(), markup=False, highlight=False, soft_wrap=True)

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)
