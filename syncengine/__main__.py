import sys

from syncengine.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
