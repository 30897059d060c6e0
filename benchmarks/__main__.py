"""``python -m benchmarks [--smoke]``."""

import sys

from benchmarks.run import main

sys.exit(main())
