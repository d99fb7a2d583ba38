from __future__ import annotations

import os
from pathlib import Path

import pytest

from avbench.data.synthetic import SyntheticSpec

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVBENCH_SHARED", REPO.parent / "shared"))
METADATA = SHARED / "data" / "avgzsl-metadata"

# A small benchmark with the default (ActivityNet-GZSL) class structure and difficulty: fast enough for unit tests.
SMALL = SyntheticSpec(
    train_per_class=30,
    val_seen_per_class=6,
    val_unseen_per_class=20,
    test_seen_per_class=6,
    test_unseen_per_class=20,
    audio_dim=64,
    video_dim=48,
)

# a budget that trains in a couple of seconds on 2 cores
TINY = {"epochs": 3, "batches_per_epoch": 15, "batch_size": 64, "hidden_encoder": 64, "hidden_decoder": 64}


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Unit tests train tiny models: one torch thread is faster and steadier than two."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the user's ~/.avbench from tests."""
    monkeypatch.setenv("AVBENCH_HOME", str(tmp_path_factory.mktemp("avbench_home")))


def needs_metadata():
    return pytest.mark.skipif(not METADATA.is_dir(), reason=f"benchmark metadata not found at {METADATA}")


PG_ADMIN = os.environ.get("AVBENCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_schema():
    """A factory of fresh PostgreSQL schemas (on the real server): URL with search_path set."""
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN)
    made = []

    def make() -> str:
        schema = f"avbench_test_{uuid.uuid4().hex[:10]}"
        with admin.begin() as c:
            c.execute(text(f"CREATE SCHEMA {schema}"))
        made.append(schema)
        return f"{PG_ADMIN}?options=-csearch_path%3D{schema}"

    yield make
    with admin.begin() as c:
        for schema in made:
            c.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def pg_database():
    """A fresh PostgreSQL database (for tools that manage their own schema, e.g. MLflow)."""
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"avbench_db_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()
