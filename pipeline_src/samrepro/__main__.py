"""`python -m samrepro ...` — the entry point every Snakemake rule calls."""

from samrepro.cli import main

raise SystemExit(main())
