"""`python -m mixer` runs the command line."""

from mixer.cli import main

raise SystemExit(main())
