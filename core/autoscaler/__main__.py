"""``python -m ember.autoscaler CONFIG ...``: the monitor process ``ember up`` starts."""

from .monitor import main

raise SystemExit(main())
