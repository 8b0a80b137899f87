"""The archive held against the API's listing: which outcomes account for a listed call, and
whether a listed window is complete (issue 20). Pure values: the end of every `sync`
(WindowReport) and `osvi-archiver check` both judge with `HELD` and `is_complete`, from what
the state has committed.

A listed call is accounted for when the state holds it `archived`, `pending` (asked again by
every later run) or `not_available` (a 404 past the pending window): an outcome that needs no
one. `failed`, or no outcome at all, is missing. A window is complete when the listing was
walked to its end with no window it could not list, no item lacked a usable call_id, and every
listed call is accounted for: only then may a summary say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archiver.archive.outcomes import Status
from archiver.osvi.listing import Gap
from archiver.osvi.times import utc_text as iso

HELD = (Status.ARCHIVED, Status.PENDING, Status.NOT_AVAILABLE)
NO_OUTCOME = "no_outcome"  # listed, and the state holds no outcome for it (yet)
_WHY = {Status.FAILED: "failed", NO_OUTCOME: "without an outcome"}


def is_complete(*, walked: bool, gaps: int, unusable: int, missing: int) -> bool:
    """Whether a listed window is complete: walked to its end, no window it could not list,
    no item without a usable call_id, no listed call missing."""
    return walked and not gaps and not unusable and not missing


@dataclass
class WindowReport:
    """What a sync listed and what the archive holds of it at the end of the run."""

    start: datetime
    end: datetime
    filters: str  # the filter set, as a person reads it
    watermark_key: str  # the state's meta key of this filter set's watermark
    default_filters: bool = True  # the default listing's (its watermark is the archive's)
    unusable: int = 0  # listed items whose call_id is not a UUID
    gaps: list[Gap] = field(default_factory=list)
    walked: bool = False  # the listing was walked to its end
    outcomes: dict[str, int] = field(default_factory=dict)  # listed ids by outcome, NO_OUTCOME

    @property
    def listed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def accounted(self) -> int:
        return sum(self.outcomes.get(status, 0) for status in HELD)

    @property
    def complete(self) -> bool:
        return self.walked and not self.gaps and not self.unusable and self.accounted == self.listed

    def to_json(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "filters": self.filters,
            "listed": self.listed,
            "with_outcome": self.accounted,
            "outcomes": dict(sorted(self.outcomes.items())),
            "unusable": self.unusable,
            "incomplete_windows": [gap.to_json() for gap in self.gaps],
            "listing_finished": self.walked,
            "complete": self.complete,
        }

    def lines(self) -> list[str]:
        """The summary's lines: `window complete: N listed, N with an outcome`, or why not."""
        said = f"{self.listed:,} listed, {self.accounted:,} with an outcome"
        if self.complete:
            return [f"window            complete: {said}"]
        missing = {k: v for k, v in sorted(self.outcomes.items()) if k not in HELD and v}
        why = ", ".join(f"{n:,} {_WHY.get(k, k)}" for k, n in missing.items())
        lines = [f"window            NOT complete: {said}" + (f" ({why})" if why else "")]
        lines += [f"  could not list {gap.text()}" for gap in self.gaps]
        if self.unusable:
            lines.append(f"  {self.unusable:,} listed items had no usable call_id")
        if not self.walked:
            lines.append("  the listing was not walked to its end: a rerun goes on from here")
        return lines
