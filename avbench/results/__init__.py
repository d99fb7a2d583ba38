"""Results layer: the SQLAlchemy results store and the leaderboard built from it."""

from avbench.errors import StoreError
from avbench.results.store import Store, default_url

__all__ = ["Store", "StoreError", "default_url"]
