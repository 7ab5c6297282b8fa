import sys

from emseg.cli import main

sys.exit(main())
