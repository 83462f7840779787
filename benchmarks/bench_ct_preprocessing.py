"""Benchmark CT pre-processing to 128x128x32 against SimpleITK's own ReadImage + Resample, and cached epochs.

1. **Per-volume pre-processing** of one 512x512x300 ``int16`` ``.nii.gz`` (synthetic, body-like HU values,
   written once to ``--cache-dir``; writing it takes about half a minute) to ``(1, 128, 128, 32)``:

   - ``sitk``: the baseline, SimpleITK alone: ``sitk.ReadImage`` then ``sitk.Resample`` onto the
     128x128x32 grid (linear) and ``GetArrayFromImage``;
   - ``ours``: the pretrain bundle's ``validate#ct_transforms`` (train.yaml's ``ct_preprocessing``:
     ``ReadImaged`` with ``SimpleITKReader(spatial_size=...)``, the HU window, ...), the pipeline pre-training uses;
   - ``monai``: the slice_selection bundle's ``preprocessing`` (``Orientationd`` + ``Resized`` on the
     full-resolution float volume), for context;
   - ``monai-nibabel``: MONAI's stock ``LoadImaged`` (nibabel reader) + ``Orientationd`` + ``ScaleIntensityRanged``
     + ``Resized``, the usual MONAI recipe.

   Each method runs in a fresh subprocess (imports excluded from the time; peak resident memory from
   ``resource.getrusage``, minus nothing: the whole process, imports included, and the process's resident
   memory after the imports is reported beside it). The methods are interleaved, ``--repeats`` rounds,
   medians reported. Targets: ``ours`` at most 1.5x ``sitk`` time, at most 1 GB peak.

2. **Cached epochs**: ``build_pretrain_dataset`` over ``--volumes`` copies of the same CT (the
   512x512x300 volume unless ``--cache-shape`` names another) with the pretrain bundle's ``train#ct_transforms``
   and ``cache="memory"``
   (``CacheDataset``) and ``cache="disk"`` (``PersistentDataset``): the first epoch (cache construction +
   one pass) against the median of the next epochs. Target: cached epochs at least 20x faster.

Usage::

    python benchmarks/bench_ct_preprocessing.py                   # both parts, 3 rounds
    python benchmarks/bench_ct_preprocessing.py --skip-cache --repeats 5
    python benchmarks/bench_ct_preprocessing.py --cache-dir /tmp/ct_bench --json out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, cpu_name, format_table, load_average

TIME_TARGET = 1.5
MEMORY_TARGET_MB = 1024.0
CACHE_TARGET = 20.0
SIZE = (128, 128, 32)
METHODS = ("sitk", "ours", "monai", "monai-nibabel")

# Run by each subprocess: import, then time the method on the file; prints one JSON line.
_WORKER = r"""
import json, resource, sys, time
method, path, bundles = sys.argv[1], sys.argv[2], sys.argv[3]
size = (128, 128, 32)
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")
if method == "sitk":
    import SimpleITK as sitk
    def run():
        img = sitk.ReadImage(path)
        in_size, in_spacing = img.GetSize(), img.GetSpacing()
        spacing = [sp * n / m for sp, n, m in zip(in_spacing, in_size, size)]
        origin = img.TransformContinuousIndexToPhysicalPoint([(n / m - 1) / 2 for n, m in zip(in_size, size)])
        out = sitk.Resample(img, list(size), sitk.Transform(), sitk.sitkLinear, origin, spacing,
                            img.GetDirection(), 0.0, sitk.sitkFloat32)
        return sitk.GetArrayFromImage(out).shape
else:
    from unimedi_monai.bundle import bundle_item
    if method == "ours":
        configs = [bundles + "/pretrain/configs/train.yaml", bundles + "/pretrain/configs/evaluate.yaml"]
        tf = bundle_item(configs, "validate#ct_transforms", {"ct_size": list(size)})
    elif method == "monai":
        tf = bundle_item(bundles + "/slice_selection/configs/inference.yaml", "preprocessing", {"ct_size": list(size)})
    else:
        from monai.transforms import (
            Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Orientationd, Resized, ScaleIntensityRanged
        )
        import torch
        tf = Compose([
            LoadImaged(keys="image", reader="NibabelReader"),
            EnsureChannelFirstd(keys="image"),
            Orientationd(keys="image", axcodes="RAS", labels=None),
            ScaleIntensityRanged(keys="image", a_min=-1000.0, a_max=1000.0, b_min=0.0, b_max=1.0, clip=True),
            Resized(keys="image", spatial_size=size, mode="trilinear"),
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
        ])
    def run():
        return tuple(tf({"image": path})["image"].shape)
base = rss_mb()
start = time.perf_counter()
shape = run()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"method": method, "seconds": seconds, "peak_mb": peak, "base_mb": base, "shape": list(shape)}))
"""


def synthetic_ct(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """A body-like int16 CT: air around an elliptic body of soft tissue, lungs, a spine, noise (HU)."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    lungs = ((np.abs(x) - 0.38) / 0.28) ** 2 + (y / 0.45) ** 2 < 1
    spine = x**2 + (y - 0.45) ** 2 < 0.01
    plane = np.full(shape[:2], -1000, dtype=np.int16)
    plane[body] = 40
    plane[lungs] = -850
    plane[spine] = 700
    vol = np.repeat(plane[:, :, None], shape[2], axis=2)
    vol += rng.integers(-30, 31, size=shape, dtype=np.int16)
    return vol


def write_volume(path: Path, shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Write the synthetic CT as NIfTI (LPS-stored, as DICOM conversions usually are); returns seconds taken."""
    import nibabel as nib

    start = time.perf_counter()
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    tmp = path.with_name(path.name + ".part.nii.gz")
    nib.save(nib.Nifti1Image(synthetic_ct(shape), affine), str(tmp))
    os.replace(tmp, path)
    return time.perf_counter() - start


def run_worker(method: str, path: Path) -> dict[str, Any]:
    """Run one method in a fresh interpreter; returns its JSON result."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, method, str(path), str(REPO / "bundles")],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr.strip().splitlines()[-1] if proc.stderr else ''}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_preprocessing(path: Path, methods: Sequence[str], repeats: int) -> list[dict[str, Any]]:
    """Interleave the methods ``repeats`` times (one warm-up round first, for the page cache); medians."""
    for m in methods:
        run_worker(m, path)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for _ in range(repeats):
        for m in methods:
            runs[m].append(run_worker(m, path))
    base = statistics.median(r["seconds"] for r in runs["sitk"]) if "sitk" in runs else float("nan")
    rows = []
    for m in methods:
        sec = statistics.median(r["seconds"] for r in runs[m])
        rows.append(
            {
                "method": m,
                "seconds": sec,
                "ratio_to_sitk": sec / base,
                "peak_mb": max(r["peak_mb"] for r in runs[m]),
                "after_imports_mb": statistics.median(r["base_mb"] for r in runs[m]),
                "shape": runs[m][0]["shape"],
                "seconds_all": [round(r["seconds"], 3) for r in runs[m]],
            }
        )
    return rows


def bench_cache(volume: Path, n: int, epochs: int, workdir: Path) -> list[dict[str, Any]]:
    """First epoch (cache fill + pass) against later epochs, for cache="memory" and "disk"."""
    from unimedi_monai.bundle import bundle_item
    from unimedi_monai.data.dataset import build_pretrain_dataset

    items = [{"image": str(volume), "report": f"Report {i}.", "modality": "ct"} for i in range(n)]
    config = REPO / "bundles" / "pretrain" / "configs" / "train.yaml"
    rows = []
    for cache in ("memory", "disk"):
        cache_dir = workdir / f"cache_{cache}"
        times = []
        start = time.perf_counter()
        ds = build_pretrain_dataset(
            items,
            None,
            bundle_item(config, "train#ct_transforms", {"ct_size": list(SIZE)}),
            cache=cache,
            cache_dir=cache_dir,
            progress=False,
        )
        for epoch in range(epochs):
            if epoch > 0:
                start = time.perf_counter()
            for i in range(len(ds)):
                sample = ds[i]
                assert tuple(sample["image"].shape) == (1, *SIZE)
            times.append(time.perf_counter() - start)
        later = statistics.median(times[1:])
        rows.append(
            {
                "cache": cache,
                "volumes": n,
                "first_epoch_s": times[0],
                "cached_epoch_s": later,
                "speedup": times[0] / later,
                "epochs_s": [round(t, 4) for t in times],
            }
        )
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "unimedi_ct_bench",
        help="where the synthetic volumes are written once and reused",
    )
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300], help="volume size (x y z)")
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.7, 0.7, 1.0], help="voxel spacing (mm)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-preprocessing", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--volumes", type=int, default=4, help="CTs in the cached-epoch dataset")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the cached-epoch run (first + cached)")
    parser.add_argument(
        "--cache-shape",
        type=int,
        nargs=3,
        default=None,
        help="size of the volume used for the cached-epoch run (default: --shape)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.cache_shape = args.cache_shape or args.shape
    if "sitk" not in args.methods:
        parser.error("--methods must include the baseline 'sitk'")
    if args.epochs < 2 or args.volumes < 1 or args.repeats < 1:
        parser.error("--epochs must be >= 2, --volumes and --repeats >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables, optionally write JSON; returns the exit status."""
    args = parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "device": cpu_name(),
        "cpus": os.cpu_count(),
        "load_average_start": load_average(),
    }
    print(f"cpu: {meta['device']} ({meta['cpus']} cores)  load {meta['load_average_start']}", flush=True)
    out: dict[str, Any] = {"meta": meta}
    if not args.skip_preprocessing:
        name = "ct_{}x{}x{}.nii.gz".format(*args.shape)
        path = args.cache_dir / name
        if not path.exists():
            print(f"writing {path} (once) ...", flush=True)
            meta["write_s"] = write_volume(path, args.shape, args.spacing)
            print(f"  took {meta['write_s']:.1f} s", flush=True)
        rows = bench_preprocessing(path, args.methods, args.repeats)
        out["preprocessing"] = rows
        print(
            f"\n4a. CT pre-processing of one {'x'.join(map(str, args.shape))} int16 .nii.gz to 128x128x32 "
            f"(median of {args.repeats}, fresh process each; targets: ours/sitk <= {TIME_TARGET}, "
            f"peak <= {MEMORY_TARGET_MB:.0f} MB)\n"
        )
        print(
            format_table(
                ["method", "seconds", "ratio to sitk", "peak MB", "MB after imports"],
                [
                    [
                        r["method"],
                        f"{r['seconds']:.3f}",
                        r["ratio_to_sitk"],
                        f"{r['peak_mb']:.0f}",
                        f"{r['after_imports_mb']:.0f}",
                    ]
                    for r in rows
                ],
            )
        )
    if not args.skip_cache:
        name = "ct_{}x{}x{}.nii.gz".format(*args.cache_shape)
        path = args.cache_dir / name
        if not path.exists():
            write_volume(path, args.cache_shape, args.spacing)
        with tempfile.TemporaryDirectory(dir=args.cache_dir) as work:
            rows = bench_cache(path, args.volumes, args.epochs, Path(work))
        out["cache"] = rows
        print(
            f"\n4b. Cached epochs: {args.volumes} CTs of {'x'.join(map(str, args.cache_shape))}, "
            f"the pretrain bundle's train#ct_transforms, {args.epochs} epochs (target first/cached >= {CACHE_TARGET})\n"
        )
        print(
            format_table(
                ["cache", "volumes", "first epoch s", "cached epoch s", "first/cached"],
                [
                    [
                        r["cache"],
                        r["volumes"],
                        f"{r['first_epoch_s']:.2f}",
                        f"{r['cached_epoch_s']:.4f}",
                        f"{r['speedup']:.0f}",
                    ]
                    for r in rows
                ],
            )
        )
    meta["load_average_end"] = load_average()
    missed = []
    for r in out.get("preprocessing", []):
        if r["method"] == "ours" and r["ratio_to_sitk"] > TIME_TARGET:
            missed.append(f"time ({r['ratio_to_sitk']:.2f}x sitk)")
        if r["method"] == "ours" and r["peak_mb"] > MEMORY_TARGET_MB:
            missed.append(f"memory ({r['peak_mb']:.0f} MB)")
    missed += [f"cache {r['cache']} ({r['speedup']:.1f}x)" for r in out.get("cache", []) if r["speedup"] < CACHE_TARGET]
    print(
        f"\ntargets missed: {', '.join(missed) if missed else 'none'}   load {meta['load_average_start']} -> "
        f"{meta['load_average_end']}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
