# SPDX-License-Identifier: Apache-2.0
"""``python -m unimedi_monai.data.demo``: see :func:`unimedi_monai.data.demo.cli.main`."""

import sys

from unimedi_monai.data.demo.cli import main

if __name__ == "__main__":
    sys.exit(main())
