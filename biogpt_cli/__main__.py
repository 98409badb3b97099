"""`python -m biogpt` and `torchrun … -m biogpt`: the same entry point as the `biogpt` script."""

import sys

from .main import main

sys.exit(main())
