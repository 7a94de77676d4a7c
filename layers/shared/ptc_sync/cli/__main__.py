"""``python -m ptc_sync.cli``: the same as the ``ptc-sync`` console script."""

import sys

from ptc_sync.cli.entry import main

sys.exit(main())
