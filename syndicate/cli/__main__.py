"""`python -m syndicate.cli`."""

import sys

from syndicate.cli import main

sys.exit(main())
