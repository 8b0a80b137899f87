"""`python -m bench.manifest_often ARGS`: osvi-archiver with its manifest written every second.

The stall scenario's run: the same tool and settings, except that the periodic manifest write
(every 60 s in the product) comes after one second, so a short run meets a large write under
way. It exists for the benchmark only; the product has no such switch.
"""

from __future__ import annotations

from archiver.cli import main as cli
from archiver.engine import lifecycle as run

run.MANIFEST_INTERVAL = 1.0
raise SystemExit(cli.main())
