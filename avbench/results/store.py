"""The results store: one row per final result, SQLite by default, any SQLAlchemy URL.

URL: ``--db`` or ``$AVBENCH_DB``; default ``sqlite:///$AVBENCH_HOME/results.db``.
PostgreSQL (``postgresql://user@host/db``) is the multi-machine backend.

Writes are idempotent on (method, dataset, features, protocol, text order, config
hash, seed, data fingerprint): the first result for a key is kept, rerunning never
adds a row (an INSERT ... ON CONFLICT DO NOTHING, so concurrent writers cannot
race). Schema creation is serialised (a PostgreSQL advisory lock; SQLite's write
lock) so several processes may start at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from avbench import __version__
from avbench.errors import AvbenchError

KEY_FIELDS = ("method", "dataset", "features", "protocol", "text_order", "config_hash", "seed", "data_fingerprint")
METRICS = ("S", "U", "HM", "ZSL")
SCHEMA_LOCK_KEY = 0x61766265  # PostgreSQL advisory lock serialising schema creation


class StoreError(AvbenchError):
    """The results store cannot be reached or used."""


class Base(DeclarativeBase):
    pass


class Result(Base):
    __tablename__ = "avbench_results"
    __table_args__ = (UniqueConstraint(*KEY_FIELDS, name="uq_avbench_result_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    method: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    features: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str] = mapped_column(String(32))
    text_order: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
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
    seconds: Mapped[float] = mapped_column(Float)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict] = mapped_column(JSON)  # stage-1 history, val metrics, β curve (for plots)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def config_hash(config: dict) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """The code's git revision (with a -dirty mark), or None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not rev:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return rev[:12] + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    return {
        "avbench_version": __version__,
        "git_revision": git_revision(),
        "torch_version": _pkg_version("torch"),
        "ray_version": _pkg_version("ray"),
        "optuna_version": _pkg_version("optuna"),
        "mlflow_version": _pkg_version("mlflow"),
    }


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


def row_from_result(result, mlflow_run_id: str | None = None, env: dict | None = None) -> dict:
    """The store row of a protocol RunResult."""
    env = env or environment()
    return {
        "method": result.method,
        "dataset": result.dataset,
        "features": result.features,
        "protocol": result.protocol,
        "text_order": result.text_order,
        "seed": int(result.seed),
        **{m: 100.0 * float(getattr(result, m)) for m in METRICS},
        "beta": float(result.beta),
        "best_epoch": int(result.best_epoch),
        "config": dict(result.config),
        "config_hash": config_hash(result.config),
        "data_fingerprint": result.data_fingerprint,
        **env,
        "device": result.device,
        "seconds": float(result.seconds),
        "mlflow_run_id": mlflow_run_id,
        "details": {
            "stage1": result.stage1,
            "val": result.val,
            "beta_curve": result.beta_curve,
            "stage2_epochs": result.stage2_epochs,
        },
        "created_at": datetime.now(timezone.utc),
    }


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
                with self.engine.begin() as conn:
                    if self.backend == "postgresql":  # one creator at a time across processes
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
                    Base.metadata.create_all(conn, checkfirst=True)
                return
            except DBAPIError as e:
                # another process created the table between our check and our CREATE: check again
                if "already exists" in str(e) and attempt < 4:
                    continue
                raise StoreError(
                    f"results store {self._safe_url()}: cannot connect or create tables ({_first_line(e)})"
                ) from None

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
        except OperationalError as e:
            raise StoreError(f"results store {self._safe_url()}: {_first_line(e)}") from None
        return out

    def add(self, result, mlflow_run_id: str | None = None) -> tuple[int, bool]:
        return self.add_rows([row_from_result(result, mlflow_run_id)])[0]

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

    def get(self, result_id: int) -> dict:
        rows = self.rows(id=int(result_id))
        if not rows:
            raise StoreError(f"result {result_id}: no such result in {self._safe_url()} (see `avbench results`)")
        return rows[0]

    def count(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Result)).scalar_one())


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _first_line(e: Exception) -> str:
    msg = str(getattr(e, "orig", e) or e)
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
