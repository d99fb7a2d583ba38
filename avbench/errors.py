"""User-facing errors: one line that names the file, field or value at fault."""


class AvbenchError(Exception):
    """An error the CLI prints as one line (no traceback)."""


class DataError(AvbenchError):
    """Bad benchmark data: a missing file, a malformed field, a failed check."""


class ConfigError(AvbenchError):
    """A bad setting: an unknown key, a value of the wrong type, an unknown name."""


class StoreError(AvbenchError):
    """The results store cannot be reached or used."""


class LeakError(AvbenchError):
    """Something asked for a split it must not see at that point of the protocol."""
