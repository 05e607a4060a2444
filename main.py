"""Entry point for ``python main.py``: without arguments it opens the desktop GUI."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["gui"]))
