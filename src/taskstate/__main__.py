import sys

from taskstate.cli import main

sys.exit(main())
