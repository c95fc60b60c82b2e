"""The monitor's never-raise policy: a decorator that contains every error of a monitor method.

A monitor must never break the training loop it watches: each guarded method catches its own
``Exception``, logs the first failure per method (logger ``vramplan.monitor``) and carries on; after
``MAX_FAILURES`` failures the monitor stops sampling. The time spent in guarded methods is added to a
counter on the monitor, which is the overhead its summary reports.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable, TypeVar

log = logging.getLogger("vramplan.monitor")

MAX_FAILURES = 20
"""Internal errors after which the monitor disables itself (a broken source must not cost every step)."""

F = TypeVar("F", bound=Callable[..., Any])


def guarded(counter: str) -> Callable[[F], F]:
    """Run the method; on any Exception log once per method, count it, return None. Adds its time to ``counter``."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self._disabled:
                return None
            t0 = time.perf_counter()
            try:
                return fn(self, *args, **kwargs)
            except Exception as exc:
                self._failures += 1
                if fn.__name__ not in self._failed_methods:
                    self._failed_methods.add(fn.__name__)
                    log.warning("vramplan monitor: %s failed (%s: %s); training continues", fn.__name__,
                                type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                if self._failures >= MAX_FAILURES:
                    self._disabled = True
                    log.warning("vramplan monitor: %d internal errors, monitoring stopped", self._failures)
                return None
            finally:
                setattr(self, counter, getattr(self, counter) + time.perf_counter() - t0)

        return wrapper  # type: ignore[return-value]

    return decorate


guard_step = guarded("_overhead_s")
"""For methods called every step (their time is the overhead the summary reports)."""
guard_once = guarded("_setup_s")
"""For start/close/on_exception (one-time costs, reported apart)."""
