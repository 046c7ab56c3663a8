"""`python -m hat <command>` == `hat <command>`."""

from hat.cli import main

raise SystemExit(main())
