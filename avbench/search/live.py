"""The live view of a running sweep (rich): trials done / running / stopped early / failed,
the best validation HM so far, elapsed and estimated time."""

from __future__ import annotations

import time

from avbench.search.trial import OBJECTIVE


class LiveView:
    """Trials done / running / stopped early, best HM so far, elapsed and estimated time."""

    def __init__(self, total: int, console=None, enabled: bool = True):
        from rich.live import Live

        self.total, self.t0 = total, time.time()
        self.best = None
        self.live = Live(self._render({}), console=console, refresh_per_second=2, transient=False) if enabled else None

    def _render(self, counts: dict):
        from rich.table import Table

        t = Table(show_header=False, box=None)
        done = counts.get("done", 0)
        elapsed = time.time() - self.t0
        eta = (elapsed / done * (self.total - done)) if done else None
        t.add_row("trials", f"{done}/{self.total} done · {counts.get('running', 0)} running · "
                            f"{counts.get('stopped', 0)} stopped early · {counts.get('error', 0)} failed")
        t.add_row("best val HM", "–" if self.best is None else f"{self.best:.2f}")
        t.add_row("time", f"{elapsed:.0f} s elapsed" + ("" if eta is None else f" · ~{eta:.0f} s left"))
        return t

    def update(self, trials) -> None:
        counts = {"done": 0, "running": 0, "stopped": 0, "error": 0}
        for tr in trials:
            status = tr.status
            last = tr.last_result or {}
            if OBJECTIVE in last:
                self.best = max(self.best or -1, float(last[OBJECTIVE]))
            if status == "TERMINATED":
                counts["done"] += 1
                epochs = int(tr.config.get("avbench", {}).get("epochs", 0))
                if epochs and int(last.get("training_iteration", epochs)) < epochs:
                    counts["stopped"] += 1
            elif status == "RUNNING":
                counts["running"] += 1
            elif status == "ERROR":
                counts["error"] += 1
                counts["done"] += 1
        self.counts = counts
        if self.live is not None:
            self.live.update(self._render(counts))

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)
