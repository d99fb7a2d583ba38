"""The results store: one row per final result, SQLite by default, any SQLAlchemy URL.

URL: ``--db`` or ``$AVBENCH_DB``; default ``sqlite:///$AVBENCH_HOME/results.db``.
PostgreSQL (``postgresql://user@host/db``) is the multi-machine backend.

Every result belongs to an *entry*: the finals of one sweep (``entry_kind="sweep"``,
named after the sweep) or a group of ``avbench run`` results (``entry_kind="run"``;
``--entry NAME``, by default one entry per configuration, budget, protocol options and
data, see :func:`default_entry`). A leaderboard cell shows one entry's results of one
configuration and data version under one set of protocol options, never a mixture.

Writes are idempotent on (entry, method, dataset, features, protocol, protocol mode,
text order, config hash, seed, data fingerprint): the first result for a key is
kept, rerunning never adds a row (an INSERT ... ON CONFLICT DO NOTHING, so
concurrent writers cannot race). Schema creation and the migration of stores
written by earlier versions (before entries existed; without the columns added
since, such as the machine) with Alembic operations (batch mode on SQLite) are
serialised (a PostgreSQL advisory lock; SQLite's write lock), so several processes
may start at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from avbench.errors import AvbenchError, ConfigError
from avbench.results.locks import schema_lock
from avbench.results.provenance import environment

KEY_FIELDS = (
    "entry", "method", "dataset", "features", "protocol", "protocol_mode", "text_order", "config_hash", "seed",
    "data_fingerprint",
)
LEGACY_KEY_FIELDS = ("method", "dataset", "features", "protocol", "text_order", "config_hash", "seed", "data_fingerprint")
ENTRY_KINDS = ("sweep", "run")
METRICS = ("S", "U", "HM", "ZSL")
SCHEMA_LOCK_KEY = 0x61766265  # PostgreSQL advisory lock serialising schema creation


class StoreError(AvbenchError):
    """The results store cannot be reached or used."""


class Base(DeclarativeBase):
    pass


class Result(Base):
    __tablename__ = "avbench_results"
    __table_args__ = (UniqueConstraint(*KEY_FIELDS, name="uq_avbench_result_entry_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry: Mapped[str] = mapped_column(String(200), index=True)
    entry_kind: Mapped[str] = mapped_column(String(16))  # sweep | run
    method: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    features: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str] = mapped_column(String(32))
    protocol_mode: Mapped[str] = mapped_column(String(16))  # platform | reference
    protocol_options: Mapped[dict] = mapped_column(JSON)
    text_order: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
    search_seeds: Mapped[list | None] = mapped_column(JSON, nullable=True)  # seeds the sweep's trials used
    reduced_budget: Mapped[bool] = mapped_column(Boolean)  # fewer epochs/batches than the protocol's default
    threads: Mapped[int | None] = mapped_column(Integer, nullable=True)  # torch CPU threads (None: unknown)
    S: Mapped[float] = mapped_column(Float)  # ×100, as reported
    U: Mapped[float] = mapped_column(Float)
    HM: Mapped[float] = mapped_column(Float)
    ZSL: Mapped[float] = mapped_column(Float)
    beta: Mapped[float] = mapped_column(Float)
    best_epoch: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(16))
    data_fingerprint: Mapped[str] = mapped_column(String(32))
    avbench_version: Mapped[str] = mapped_column(String(32))
    git_revision: Mapped[str | None] = mapped_column(String(64), nullable=True)
    torch_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ray_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    optuna_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mlflow_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    device: Mapped[str] = mapped_column(String(32))
    # the CPU or GPU model (protocol.machine.hardware); None: not recorded (stores before it)
    hardware: Mapped[str | None] = mapped_column(String(200), nullable=True)
    seconds: Mapped[float] = mapped_column(Float)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict] = mapped_column(JSON)  # stage-1 history, val metrics, β curve (for plots)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


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


def default_url(home: str | os.PathLike | None = None) -> str:
    from avbench.data.registry import avbench_home

    env = os.environ.get("AVBENCH_DB")
    if env:
        return env
    path = avbench_home(home) / "results.db"
    return f"sqlite:///{path}"


def _normalise_url(url: str) -> str:
    # psycopg 3 is the driver avbench installs; plain postgresql:// would ask for psycopg2
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


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


# what every result of one `run` entry shares (a sweep's entry may move to a new best configuration)
ENTRY_IDENTITY = ("entry_kind", "method", "dataset", "features", "protocol", "protocol_mode", "text_order",
                  "config_hash", "data_fingerprint", "protocol_options")


class Store:
    """Open (and if needed create) the results store at ``url``."""

    def __init__(self, url: str | None = None, home: str | os.PathLike | None = None):
        self.url = _normalise_url(url or default_url(home))
        try:
            u = make_url(self.url)
        except ArgumentError:
            raise StoreError(f"--db {url!r}: not a SQLAlchemy database URL (e.g. sqlite:///results.db)") from None
        self.backend = u.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.backend == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60}
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except (NoSuchModuleError, ImportError) as e:
            raise StoreError(f"--db {self.url}: no driver for this database ({e})") from None
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._create_schema()

    def _create_schema(self) -> None:
        for attempt in range(5):
            try:
                with schema_lock(self.url, SCHEMA_LOCK_KEY), self.engine.begin() as conn:  # one creator at a time
                    Base.metadata.create_all(conn, checkfirst=True)
                    _migrate(conn)
                return
            except DBAPIError as e:
                # another process created the table (or migrated it) between our check and ours: check again
                if ("already exists" in str(e) or "duplicate column" in str(e)) and attempt < 4:
                    continue
                if "must be owner" in str(e):
                    raise StoreError(
                        f"results store {self._safe_url()}: written by an earlier avbench, it needs new columns, "
                        f"which only the owner of table {Result.__tablename__} may add: open it once as that user"
                    ) from None
                raise StoreError(
                    f"results store {self._safe_url()}: cannot connect or create tables ({_first_line(e)})"
                ) from None
            except ConfigError as e:  # the schema lock
                raise StoreError(f"results store {self._safe_url()}: {e}") from None

    def _safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    # -- writing ------------------------------------------------------------
    def add_rows(self, rows: Iterable[dict]) -> list[tuple[int, bool]]:
        """Insert rows idempotently; return (id, inserted) for each."""
        rows = list(rows)
        if not rows:
            return []
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.backend == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - other backends: plain insert guarded by the unique key
            insert = None
        for row in rows:
            row.setdefault("entry_kind", "run")
            row.setdefault("protocol_mode", "platform")
            row.setdefault("protocol_options", {})
            row.setdefault("reduced_budget", False)
            row.setdefault("entry", default_entry(row))
        for row in {r["entry"]: r for r in rows}.values():
            self.check_entry(row)
        out = []
        try:
            with Session(self.engine) as session, session.begin():
                for row in rows:
                    inserted = True
                    if insert is not None:
                        stmt = insert(Result).values(**row).on_conflict_do_nothing(
                            index_elements=list(KEY_FIELDS)
                        ).returning(Result.id)
                        rid = session.execute(stmt).scalar()
                    else:
                        rid = None
                    if rid is None:
                        inserted = False
                        rid = session.execute(
                            select(Result.id).filter_by(**{k: row[k] for k in KEY_FIELDS})
                        ).scalar_one()
                    out.append((int(rid), inserted))
        except DBAPIError as e:  # unreachable, locked, or no right to write (e.g. a PostgreSQL role without INSERT)
            raise StoreError(f"results store {self._safe_url()}: {_first_line(e)}") from None
        return out

    def add(
        self,
        result,
        mlflow_run_id: str | None = None,
        *,
        entry: str | None = None,
        entry_kind: str = "run",
        search_seeds: list[int] | None = None,
    ) -> tuple[int, bool]:
        row = row_from_result(result, mlflow_run_id, entry=entry, entry_kind=entry_kind, search_seeds=search_seeds)
        return self.add_rows([row])[0]

    def check_entry_compatible(self, entry: str, **identity) -> None:
        """Before a run: would a result with this identity fit the named entry? (See :meth:`check_entry`.)"""
        existing = self.rows(columns=list(ENTRY_IDENTITY), entry=entry)
        if not existing:
            return
        first = existing[0]
        if first["entry_kind"] != "run":
            raise StoreError(f"entry {entry!r} holds the finals of a sweep; `avbench run` results need another --entry")
        for k, v in identity.items():
            if not _same(k, first[k], v):
                raise StoreError(
                    f"entry {entry!r} holds {k}={first[k]!r}; this run has {k}={v!r}: one entry is one configuration "
                    f"on one data version (choose another --entry)"
                )

    def check_entry(self, row: dict) -> None:
        """A named ``run`` entry holds one configuration of one method on one data version:
        refuse a result that differs (one line naming the entry and what differs)."""
        existing = self.rows(columns=list(ENTRY_IDENTITY), entry=row["entry"])
        if not existing:
            return
        first = existing[0]
        if first["entry_kind"] != row["entry_kind"]:
            raise StoreError(
                f"entry {row['entry']!r} holds {first['entry_kind']} results; this is a {row['entry_kind']} result "
                f"(choose another --entry)"
            )
        if row["entry_kind"] == "sweep":
            return  # a resumed sweep may move its entry to a new best configuration (a new cell)
        for k in ENTRY_IDENTITY:
            if not _same(k, first[k], row[k]):
                raise StoreError(
                    f"entry {row['entry']!r} holds {k}={first[k]!r}; this result has {k}={row[k]!r}: one entry is "
                    f"one configuration on one data version (choose another --entry)"
                )

    # -- reading ------------------------------------------------------------
    def rows(self, columns: Iterable[str] | None = None, **filters) -> list[dict]:
        """Rows as dicts (SQLAlchemy Core, no ORM objects: fast for large stores)."""
        cols = [getattr(Result, c) for c in (columns or [c.name for c in Result.__table__.columns])]
        stmt = select(*cols)
        for key, value in filters.items():
            if value is None:
                continue
            col = getattr(Result, key)
            stmt = stmt.where(col.in_(value) if isinstance(value, (list, tuple, set)) else col == value)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt.order_by(Result.id))]

    def configs(self) -> dict[str, dict]:
        """Each distinct configuration in the store, by its hash (one row read per hash)."""
        first = select(func.min(Result.id)).group_by(Result.config_hash)
        with self.engine.connect() as conn:
            query = select(Result.config_hash, Result.config).where(Result.id.in_(first))
            return {h: c for h, c in conn.execute(query)}

    def get(self, result_id: int) -> dict:
        rows = self.rows(id=int(result_id))
        if not rows:
            raise StoreError(f"result {result_id}: no such result in {self._safe_url()} (see `avbench results`)")
        return rows[0]

    def delete_entry(self, entry: str) -> int:
        """Remove every result of ``entry``; the number removed (0: no such entry)."""
        with Session(self.engine) as session, session.begin():
            n = session.execute(delete(Result).where(Result.entry == entry)).rowcount
        return int(n or 0)

    def entries(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(Result.entry).distinct().order_by(Result.entry))]

    def count(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Result)).scalar_one())


def _migrate(conn) -> None:
    """Bring a store written by an earlier avbench to the current schema (idempotent):
    :func:`_migrate_entries`, then every nullable column added since, left empty
    (unknown) on the old rows."""
    _migrate_entries(conn)
    have = {c["name"] for c in inspect(conn).get_columns(Result.__tablename__)}
    missing = [c for c in Result.__table__.columns if c.name not in have]
    if not missing:
        return
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    op = Operations(MigrationContext.configure(conn))
    for c in missing:
        if not c.nullable:
            raise StoreError(f"results store: column {c.name} has no migration for the rows already stored")
        op.add_column(Result.__tablename__, Column(c.name, c.type, nullable=True))


def _migrate_entries(conn) -> None:
    """Bring a store written before entries existed to the schema of entries (idempotent).

    Old rows become entries: sweep finals (they carry an MLflow run id) of kind ``sweep``
    named ``migrated-sweep/<method>/<dataset>-<features>/<protocol>/<config>``, others the
    default run entry; their budget is unknown, so they count as full-budget. Old sweeps
    chose their configuration on seed 0 and reran it as a final: their search seeds are
    recorded as ``[0]``, so the leaderboard leaves that final out.
    """
    cols = {c["name"] for c in inspect(conn).get_columns(Result.__tablename__)}
    if "entry" in cols:
        return
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    op = Operations(MigrationContext.configure(conn))
    new_cols = [
        Column("entry", String(200), nullable=True),
        Column("entry_kind", String(16), nullable=True),
        Column("protocol_mode", String(16), nullable=True),
        Column("protocol_options", JSON, nullable=True),
        Column("search_seeds", JSON, nullable=True),
        Column("reduced_budget", Boolean, nullable=True),
        Column("threads", Integer, nullable=True),
    ]
    with op.batch_alter_table(Result.__tablename__) as batch:
        for c in new_cols:
            batch.add_column(c)
    table = Result.__table__
    rows = conn.execute(select(table.c.id, *[table.c[k] for k in LEGACY_KEY_FIELDS], table.c.mlflow_run_id)).all()
    for r in rows:
        m = dict(r._mapping)
        m["protocol_mode"] = "platform"
        if m["mlflow_run_id"]:
            kind = "sweep"
            entry = (f"migrated-sweep/{m['method']}/{m['dataset']}-{m['features']}/{m['protocol']}/"
                     f"{m['config_hash'][:8]}")
        else:
            kind, entry = "run", default_entry(m)
        conn.execute(
            table.update().where(table.c.id == m["id"]).values(
                entry=entry, entry_kind=kind, protocol_mode="platform", protocol_options={}, reduced_budget=False,
                # sweeps before entries trained every trial on seed 0 and ran finals from seed 0
                search_seeds=[0] if kind == "sweep" else None,
            )
        )
    with op.batch_alter_table(Result.__tablename__) as batch:
        batch.drop_constraint("uq_avbench_result_key", type_="unique")
        for name in ("entry", "entry_kind", "protocol_mode", "protocol_options", "reduced_budget"):
            batch.alter_column(name, nullable=False)
        batch.create_unique_constraint("uq_avbench_result_entry_key", list(KEY_FIELDS))
        batch.create_index("ix_avbench_results_entry", ["entry"])


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _first_line(e: Exception) -> str:
    msg = str(getattr(e, "orig", e) or e)
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
