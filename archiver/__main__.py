"""`python -m archiver` runs the same CLI as the `osvi-archiver` console script."""

from archiver.cli.main import main

raise SystemExit(main())
