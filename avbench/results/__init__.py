"""Results layer: the SQLAlchemy results store and the leaderboard built from it."""

from avbench.results.store import Store, StoreError, default_url

__all__ = ["Store", "StoreError", "default_url"]
