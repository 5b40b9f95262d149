"""``python -m adapters.cli`` runs the command line (the same as the ``imagine-bot`` script)."""

from adapters.cli.main import main

raise SystemExit(main())
