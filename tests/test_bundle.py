"""Image bundles (experiments/make_bundle.py) and the folders: source they feed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dhde.data.bundle import make_bundle
from dhde.data.sources import iter_source, source_entries

ROOT = Path(__file__).resolve().parents[1]


def _photo(rng, h=90, w=120):
    y, x = np.mgrid[:h, :w]
    base = np.stack([(x // 9 % 2) * 0.5 + 0.2, (y // 7 % 2) * 0.4 + 0.3, np.full((h, w), 0.5)], -1)
    return (np.clip(base + rng.normal(0, 0.02, (h, w, 3)), 0, 1) * 255).astype(np.uint8)


def _split_folders(root, rng):
    import skimage.data

    crops = {"train": [skimage.data.astronaut()[40:136, 160:288], skimage.data.astronaut()[200:296, 300:428]],
             "validation": [skimage.data.coffee()[100:196, 200:328]], "test": [skimage.data.rocket()[100:196, 100:228]]}
    for split, imgs in crops.items():
        (root / split).mkdir(parents=True)
        for i, im in enumerate(imgs):
            Image.fromarray(im).save(root / split / f"{split}{i}.png")


def test_folders_source_uses_the_folder_splits(tmp_path, rng):
    _split_folders(tmp_path / "src", rng)
    got = {s: [n for n, _ in iter_source(f"folders:{tmp_path / 'src'}", s, downscale=1)]
           for s in ("train", "validation", "test")}
    assert got == {"train": ["train/train0.png", "train/train1.png"],
                   "validation": ["validation/validation0.png"], "test": ["test/test0.png"]}
    e = source_entries(f"folders:{tmp_path / 'src'}", 1)
    assert {x["split"] for x in e} == {"train", "validation", "test"}
    with pytest.raises(ValueError, match="sub-folders"):
        list(iter_source(f"folders:{tmp_path}", "train"))


def test_make_bundle_roundtrip(tmp_path, rng):
    _split_folders(tmp_path / "src", rng)
    out = make_bundle(f"folders:{tmp_path / 'src'}", tmp_path / "b", downscale=2, quality=95)
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["files"]) == 4 and m["downscale"] == 2
    img = np.asarray(Image.open(out / "train" / "train_train0.png.jpg"))
    assert img.shape == (48, 64, 3)
    names = [n for n, _ in iter_source(f"folders:{out}", "test", downscale=1)]
    assert names == ["test/test_test0.png.jpg"]
    with pytest.raises(ValueError, match="not empty"):
        make_bundle(f"folders:{tmp_path / 'src'}", out)
    with pytest.raises(ValueError, match="MiB"):
        make_bundle(f"folders:{tmp_path / 'src'}", tmp_path / "c", downscale=1, max_mib=1e-4)
    with pytest.raises(ValueError, match="quality"):
        make_bundle("skimage", tmp_path / "d", quality=20)


@pytest.mark.slow
def test_paper_scale_script_runs_tiny_on_cpu(tmp_path, rng):
    _split_folders(tmp_path / "photos", rng)
    src = make_bundle(f"folders:{tmp_path / 'photos'}", tmp_path / "bundle", downscale=1)
    env = {**os.environ, "STEPS": "4", "BATCH": "8", "PER_SCALE": "3", "EVAL": "2",
           "DATA_DIR": str(tmp_path / "tfds"), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run(["bash", str(ROOT / "benchmarks/train_paper_scale.sh"), str(src), str(tmp_path / "run")],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    r = subprocess.run(["bash", str(ROOT / "benchmarks/train_paper_scale.sh"), str(tmp_path / "nope")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no bundle" in r.stderr
