"""``python -m avbench.cli``: run the command line."""

import sys

from avbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
