"""``python -m densepr`` (and ``torchrun -m densepr``)."""

import sys

from densepr.cli.main import main

sys.exit(main())
