"""Where a result comes from: the code revision, the package versions and the machine.

A number is citable only with the code that computed it (``git_revision``: avbench's own
checkout, or the commit pip installed it from) and the machine and torch build its seed
reproduces on (``machine``); the store records both with every result.
"""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

from avbench import __version__


def _pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """The code's git revision (with a -dirty mark): of avbench's own checkout, else the commit pip
    installed it from (``pip install git+...@<commit>``, recorded in its ``direct_url.json``,
    PEP 610), else None (an installed package inside another project's repository is not
    that project's code)."""
    here = Path(__file__).resolve().parent
    source_root = here.parents[1]  # avbench/results/ -> the checkout holding the avbench package
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not top or Path(top).resolve() != source_root:
            return _installed_commit()
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not rev:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return rev[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        return _installed_commit()


def _installed_commit() -> str | None:
    """The git commit avbench was installed from, where pip recorded one (PEP 610 ``vcs_info``)."""
    try:
        text = distribution("avbench").read_text("direct_url.json")
        commit = (json.loads(text).get("vcs_info") or {}).get("commit_id") if text else None
    except (PackageNotFoundError, ValueError, AttributeError):
        return None
    return commit[:12] if isinstance(commit, str) and commit else None


def code(row: dict) -> str:
    """The code a result (a store row) ran: its git revision, else (installed from a package,
    no checkout) its avbench version."""
    if row.get("git_revision"):
        return row["git_revision"]
    return f"avbench-{row['avbench_version']}" if row.get("avbench_version") else "unknown"


def machine(row: dict) -> str:
    """The machine a result (a store row, or a run's fields) ran on, as the leaderboard and
    ``avbench`` print it ("unknown" where it was not recorded)."""
    return f"{row.get('hardware') or 'unknown machine'}, torch {row.get('torch_version') or 'unknown'}"


def environment() -> dict:
    return {
        "avbench_version": __version__,
        "git_revision": git_revision(),
        "torch_version": _pkg_version("torch"),
        "ray_version": _pkg_version("ray"),
        "optuna_version": _pkg_version("optuna"),
        "mlflow_version": _pkg_version("mlflow"),
    }
