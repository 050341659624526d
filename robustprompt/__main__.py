"""`python -m robustprompt`: the same command as the `robustprompt` console script."""

import sys

from robustprompt.cli import main

sys.exit(main())
