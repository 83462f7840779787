# Copyright (c) unimedi-monai contributors
# Licensed under the Apache License, Version 2.0
"""``python -m unimedi_monai.data.demo``: see :func:`unimedi_monai.data.demo.cli.main`."""

import sys

from unimedi_monai.data.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
