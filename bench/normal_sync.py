"""`python -m bench.normal_sync ARGS`: osvi-archiver with the state at `synchronous=NORMAL`.

The reference of the durability scenario: the same tool and settings, except that a commit of
the state is not fsynced (what it was before issue 11: a power cut then lost every outcome
since the last checkpoint). It exists for the comparison only; the product has no such switch.
"""

from __future__ import annotations

from typing import Any

from archiver.cli import main as cli
from archiver.state import database as state

_migrate = state.State._migrate


def _normal(self: Any) -> None:
    _migrate(self)
    if not self.readonly:
        self._db.execute("PRAGMA synchronous=NORMAL")


state.State._migrate = _normal  # type: ignore[method-assign]
raise SystemExit(cli.main())
