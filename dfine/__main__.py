"""``python -m dfine COMMAND ...``: the ``dfine`` command, also under ``torchrun -m dfine train ...``
(several processes or GPUs from a pip install, without the checkout's ``train.py``)."""

import sys

from dfine.cli import main

if __name__ == "__main__":
    sys.exit(main())
