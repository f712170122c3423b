import sys

from syncengine.cli import main

# Guarded: worker processes (syncengine.shards, "spawn") import the main module again.
if __name__ == "__main__":
    sys.exit(main())
