"""A compact, portable copy of a training source: downscaled JPEGs in split folders + manifest.

Building the patch data set needs the source photographs; Debian packages exist only where they
are installed. :func:`make_bundle` writes the kept photographs of any source, already
box-downscaled, as ``{train,validation,test}/<name>.jpg`` plus ``manifest.json``; the source
``folders:<bundle>`` reads them back with the same splits (use ``downscale=1`` there).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from dhde import checks
from dhde.data.sources import SPLITS, area_downscale, iter_source, source_entries


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def make_bundle(source: str, out: str | os.PathLike, *, downscale: int = 3, seed: int = 0,
                quality: int = 95, max_mib: float = 64.0) -> Path:
    """Writes the bundle of ``source`` to ``out`` (a new or empty folder); returns its path.

    Args:
      source: a training source spec (see ``dhde.data.sources.iter_source``).
      out: destination folder; must not contain files already (nothing is overwritten).
      downscale: box-downscale factor applied before saving (phase (0, 0)).
      seed: the split seed of the source.
      quality: JPEG quality, 50-100.
      max_mib: largest total size; the bundle is removed again and an error raised beyond it.

    Raises:
      ValueError: bad arguments, a non-empty destination, or a bundle over ``max_mib``.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    checks.integer(quality, "quality (JPEG)", lo=50, hi=100, where="make_bundle")
    checks.integer(downscale, "downscale", lo=1, where="make_bundle")
    checks.integer(seed, "seed", where="make_bundle")
    checks.scalar(max_mib, "max_mib", lo=0.0, lo_open=True, where="make_bundle")
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"bundle folder {str(out)!r} is not empty; choose a new one")
    written, total = [], 0
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        for name, rgb in tqdm(iter_source(source, split, seed=seed, downscale=downscale),
                              desc=f"bundle {split}", unit="img"):
            small = area_downscale(rgb, downscale)
            p = out / split / f"{_safe(name)}.jpg"
            if p.exists():
                raise ValueError(f"two sources map to the same bundle file {p.name!r}")
            tmp = p.with_suffix(".tmp")
            Image.fromarray(np.clip(np.round(small * 255), 0, 255).astype(np.uint8)).save(
                tmp, format="JPEG", quality=int(quality), subsampling=0)
            os.replace(tmp, p)
            total += p.stat().st_size
            written.append({"name": name, "split": split, "file": str(p.relative_to(out))})
    entries = source_entries(source, downscale, seed)
    manifest = {"source": source, "downscale": downscale, "seed": seed, "quality": quality,
                "files": written, "screening": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    mib = total / 2**20
    if mib > max_mib:
        raise ValueError(f"bundle is {mib:.1f} MiB, over max_mib={max_mib}: lower quality or "
                         f"raise downscale (left in {str(out)!r} for inspection)")
    print(f"{len(written)} photographs, {mib:.1f} MiB")
    return out
