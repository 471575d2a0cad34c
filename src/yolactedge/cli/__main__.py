"""`python -m yolactedge.cli`: what torchrun starts for distributed training."""
import sys

from . import main

sys.exit(main())
