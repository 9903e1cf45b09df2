"""``python -m dagrpo_verl.eval``: see :mod:`dagrpo_verl.eval.cli`."""

import sys

from dagrpo_verl.eval.cli import main

sys.exit(main())
