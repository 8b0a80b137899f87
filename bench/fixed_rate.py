"""`python -m bench.fixed_rate ARGS`: osvi-archiver with adaptive concurrency switched off.

The "fixed rate" run of the throttled scenario: the same tool and settings, except that a 429
no longer halves the API rate or the calls in flight (the Retry-After pause stays). It exists
for the comparison only; the product has no such switch.
"""

from __future__ import annotations

from archiver.cli import main as cli
from archiver.osvi import limits


def _no_adaptation() -> None:
    limits.RateLimiter.slow_down = lambda self: None  # type: ignore[method-assign]
    limits.InFlight.throttled = lambda self: None  # type: ignore[method-assign]


_no_adaptation()
raise SystemExit(cli.main())
