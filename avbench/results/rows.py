"""What one stored result is, independent of the database: its row, its key and its entry.

A row is a protocol RunResult with its provenance and budget (:func:`row_from_result`).
``KEY_FIELDS`` identify it (writing a row twice keeps the first); its entry (by default
:func:`default_entry`) and what every result of one entry shares (``ENTRY_IDENTITY``)
decide which leaderboard cell it joins. Configurations and protocol options are compared
as canonical JSON (:func:`config_hash`, :func:`options_key`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from avbench.errors import StoreError
from avbench.results.provenance import environment

KEY_FIELDS = (
    "entry", "method", "dataset", "features", "protocol", "protocol_mode", "text_order", "config_hash", "seed",
    "data_fingerprint",
)
ENTRY_KINDS = ("sweep", "run")
METRICS = ("S", "U", "HM", "ZSL")

# what every result of one `run` entry shares (a sweep's entry may move to a new best configuration)
ENTRY_IDENTITY = ("entry_kind", "method", "dataset", "features", "protocol", "protocol_mode", "text_order",
                  "config_hash", "data_fingerprint", "protocol_options")


def config_hash(config: dict) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def options_key(options: dict | None) -> str:
    """Protocol options as one comparable, hashable value (canonical JSON; none: ``{}``)."""
    return json.dumps(options or {}, sort_keys=True, separators=(",", ":"), default=str)


def options_hash(options: dict | None) -> str:
    """A short hash of a result's protocol options (in non-platform default entry names)."""
    return hashlib.sha256(options_key(options).encode()).hexdigest()[:16]


def _same(key: str, a, b) -> bool:
    return options_key(a) == options_key(b) if key == "protocol_options" else a == b


def is_reduced_budget(config: dict, default_budget: dict | None) -> bool:
    """Fewer epochs or batches per epoch (or smaller batches) than the protocol's default for the method."""
    if not default_budget:
        return False
    return any(int(config.get(k, v)) < int(v) for k, v in default_budget.items())


def default_entry(row: dict) -> str:
    """The entry of an ``avbench run`` result given no ``--entry``: one per configuration
    (budget included), protocol (with its options: a reference mode's rules), text order and
    data version."""
    mode = "" if row.get("protocol_mode", "platform") == "platform" else f"/{row['protocol_mode']}"
    if row.get("protocol_options"):  # rules of a code version (e.g. stage2_lr): another version, another entry
        mode += "-" + options_hash(row["protocol_options"])[:8]
    return (
        f"run/{row['method']}/{row['dataset']}-{row['features']}/{row['protocol']}{mode}/{row['text_order']}/"
        f"{row['config_hash'][:8]}/{row['data_fingerprint'][:8]}"
    )


def row_from_result(
    result,
    mlflow_run_id: str | None = None,
    env: dict | None = None,
    *,
    entry: str | None = None,
    entry_kind: str = "run",
    search_seeds: list[int] | None = None,
) -> dict:
    """The store row of a protocol RunResult, in ``entry`` (default: :func:`default_entry`)."""
    if entry_kind not in ENTRY_KINDS:
        raise StoreError(f"entry kind {entry_kind!r}: expected one of {', '.join(ENTRY_KINDS)}")
    env = env or environment()
    row = {
        "entry_kind": entry_kind,
        "method": result.method,
        "dataset": result.dataset,
        "features": result.features,
        "protocol": result.protocol,
        "protocol_mode": getattr(result, "protocol_mode", "platform"),
        "protocol_options": dict(getattr(result, "protocol_options", {}) or {}),
        "text_order": result.text_order,
        "seed": int(result.seed),
        "search_seeds": [int(x) for x in search_seeds] if search_seeds is not None else None,
        "reduced_budget": is_reduced_budget(result.config, getattr(result, "default_budget", None)),
        "threads": int(result.threads) if getattr(result, "threads", 0) else None,
        **{m: 100.0 * float(getattr(result, m)) for m in METRICS},
        "beta": float(result.beta),
        "best_epoch": int(result.best_epoch),
        "config": dict(result.config),
        "config_hash": config_hash(result.config),
        "data_fingerprint": result.data_fingerprint,
        **env,
        # the run's own code and torch (a sweep's final may run on another node than the process storing it)
        **({"git_revision": result.git_revision, "avbench_version": result.avbench_version}
           if getattr(result, "avbench_version", None) else {}),
        "torch_version": getattr(result, "torch_version", "") or env.get("torch_version"),
        "device": result.device,
        "hardware": getattr(result, "hardware", "") or None,
        "seconds": float(result.seconds),
        "mlflow_run_id": mlflow_run_id,
        "details": {
            "stage1": result.stage1,
            "val": result.val,
            "beta_curve": result.beta_curve,
            "stage2_epochs": result.stage2_epochs,
            "default_budget": getattr(result, "default_budget", {}),
        },
        "created_at": datetime.now(timezone.utc),
    }
    row["entry"] = entry or default_entry(row)
    return row

