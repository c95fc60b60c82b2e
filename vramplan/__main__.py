"""``python -m vramplan``."""

from .cli.main import main

raise SystemExit(main())
