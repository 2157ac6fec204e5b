"""What an evaluation says while it runs: a progress bar and log lines, and one warning about NaN scores."""

from __future__ import annotations

import time
import warnings


def warn_nan(count: int, logger, stacklevel: int) -> None:
    """One warning (Python's and the log's) when ``count`` candidate scores were NaN; ``stacklevel`` as the caller's."""
    if count:
        msg = (f"evaluate: {count:,} candidate scores were NaN; they rank as the worst candidates "
               "(a NaN answer ranks last). The model has probably diverged.")
        warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel + 1)
        logger.warning(msg)


class Progress:
    """Evaluation progress: a tqdm bar (``progress``) and a log line about every ``log_every`` queries."""

    def __init__(self, total: int, name: str, progress: bool, log_every: int, logger, t0: float):
        self.total, self.name, self.logger, self.t0, self.done = total, name, logger, t0, 0
        self.every = log_every if log_every and log_every > 0 else None
        self.next_log = self.every
        self.bar = None
        if progress:
            from tqdm.auto import tqdm  # a widget in Jupyter, a text bar on a terminal

            self.bar = tqdm(total=total, desc=f"evaluate {name}", unit="q", leave=False)

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        if self.next_log is not None and self.done >= self.next_log:
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            self.logger.info("Evaluating %s: %d/%d queries (%.0f queries/s)", self.name, self.done, self.total, rate)
            while self.next_log <= self.done:
                self.next_log += self.every

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
