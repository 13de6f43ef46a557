"""``python -m zeroskip``: the same as the ``zeroskip`` command."""

import sys

from zeroskip.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
