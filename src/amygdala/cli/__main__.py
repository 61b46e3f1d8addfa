"""``python -m amygdala.cli``."""

import sys

from amygdala.cli import main

sys.exit(main())
