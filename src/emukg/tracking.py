"""Experiment trackers (``--tracker``): callbacks that mirror a run's metrics to TensorBoard or MLflow.

``metrics.jsonl`` in the run folder stays the always-on record; a tracker is an optional copy.
"""

from __future__ import annotations


def build_trackers(config, folder) -> list:
    """The tracker callbacks ``config.tracker`` asks for (none when it is unset)."""
    if config.tracker is None:
        return []
    raise NotImplementedError(f"tracker {config.tracker!r} is not implemented yet")
