"""``python -m contrec_hf.cli``: the ``contrec-hf`` command (torchrun and accelerate launch start it this way)."""

import sys

from . import main

sys.exit(main())
