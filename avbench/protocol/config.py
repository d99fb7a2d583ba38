"""A run's configuration: the settings a method trains with, resolved in layers and typed.

Protocol defaults < the method's defaults for the benchmark < the options a
reference protocol fixes < the user's overrides (:func:`resolve_config`); every
value takes the type of its default (:func:`coerce`), so ``--set epochs=4`` is
an int and ``--set reg_loss=false`` a bool.
"""

from __future__ import annotations

from avbench.errors import ConfigError
from avbench.methods import get_method
from avbench.protocol.presets import PROTOCOL_DEFAULTS, PROTOCOL_OPTIONS


def resolve_config(
    method: str, dataset: str, features: str, overrides: dict | None = None, protocol_options: dict | None = None
) -> dict:
    """Protocol defaults < method defaults for the benchmark < protocol options < user overrides (typed).

    ``protocol_options`` are the settings a reference protocol fixes (see
    ``resolve_protocol``; its protocol-level keys are skipped here): a user override
    may not change them, so a reference result is always its code's protocol.
    """
    cls = get_method(method)
    config = {**PROTOCOL_DEFAULTS, **cls.defaults(dataset, features)}
    fixed = {k: v for k, v in (protocol_options or {}).items() if k not in PROTOCOL_OPTIONS}
    for key, value in fixed.items():
        if key not in config:
            raise ConfigError(f"method {cls.name}: protocol option {key!r} is not one of its settings")
        config[key] = coerce(key, value, config[key])
    for key, value in (overrides or {}).items():
        if key not in config:
            raise ConfigError(f"unknown setting {key!r} for method {cls.name}; known: {', '.join(sorted(config))}")
        value = coerce(key, value, config[key])
        if key in fixed and value != config[key]:
            raise ConfigError(
                f"setting {key}={value!r}: the reference protocol of {cls.name} fixes {key}={config[key]!r}; "
                f"vary it under a preset (e.g. --protocol avca2022 --set {key}=...)"
            )
        config[key] = value
    for key in ("epochs", "batches_per_epoch", "batch_size"):
        if int(config[key]) < 1:
            raise ConfigError(f"setting {key}={config[key]!r}: expected a positive integer")
    return config


def coerce(key: str, value, default):
    """Convert ``value`` to the type of the default (bool, int, float, str)."""
    if default is None or isinstance(value, type(default)) and not (isinstance(default, int) and isinstance(value, bool)):
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                v = value.strip().lower()
                if v in ("1", "true", "yes", "on"):
                    return True
                if v in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if isinstance(default, int):
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        if isinstance(default, float):
            return float(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key}={value!r}: expected {type(default).__name__} like {default!r}") from None
