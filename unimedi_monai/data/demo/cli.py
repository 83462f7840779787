# SPDX-License-Identifier: Apache-2.0
"""Command line of the demo generator: ``python -m unimedi_monai.data.demo OUT_DIR ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from unimedi_monai.data.demo.generate import generate_demo_dataset

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """
    Command line: ``python -m unimedi_monai.data.demo OUT_DIR [--n-xray N] [--n-ct N] [--seed S]
    [--val-fraction F] [--xray-variation template|patient] [--force] [--quiet]``; prints the datalist path.

    Returns:
        the process exit status (0 on success, 2 on invalid arguments or an unusable folder).
    """
    parser = argparse.ArgumentParser(
        prog="python -m unimedi_monai.data.demo",
        description="Generate the synthetic unimedi-monai demo dataset (chest X-rays, CTs, reports, datalist.json).",
    )
    parser.add_argument("out_dir", help="output folder (absent, empty, or holding the same demo)")
    parser.add_argument("--n-xray", type=int, default=240, help="number of chest radiographs (default 240)")
    parser.add_argument("--n-ct", type=int, default=120, help="number of chest CTs (default 120)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="validation fraction of patients (default 0.2)")
    parser.add_argument(
        "--xray-variation",
        choices=("template", "patient"),
        default="template",
        help="template: one chest, slightly jittered (default); patient: framing, habitus, exposure, markers "
        "and devices vary as in real radiographs",
    )
    parser.add_argument("--force", action="store_true", help="replace the contents of OUT_DIR and regenerate")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        path = generate_demo_dataset(
            args.out_dir,
            n_xray=args.n_xray,
            n_ct=args.n_ct,
            seed=args.seed,
            val_fraction=args.val_fraction,
            force=args.force,
            progress=not args.quiet,
            xray_variation=args.xray_variation,
        )
    except (ValueError, FileExistsError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0
