"""Search layer: hyperparameter spaces (and, built on them, sweeps)."""
