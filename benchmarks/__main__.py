"""``python -m benchmarks [--smoke]``."""

import sys

from benchmarks.render_docs import after_run
from benchmarks.run import main

status = main()
if status == 0:
    after_run(sys.argv[1:])
sys.exit(status)
