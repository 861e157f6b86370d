import sys

from uncia.cli import main

sys.exit(main())
