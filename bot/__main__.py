"""``python -m bot`` runs the CLI: process glue the core never imports (docs/architecture.md)."""

from adapters.cli.main import main

raise SystemExit(main())
