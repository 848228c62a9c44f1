"""The TFDS training-set builder, on one 64x64 photograph crop per split.

The crops go into a ``folder:`` source (names picked so that ``split_of`` sends one to each
split): building the full-size scikit-image photographs of the ``tiny`` config takes ~20 s per
build on a busy CPU, a 64x64 crop well under a second, and the builder code is the same.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from dhde.data.defocus_patches import build, make_config
from dhde.data.patch_sampling import BLUR_RADIUS
from dhde.data.sources import SKIMAGE_SPLITS, SPLITS, split_of
from dhde.filters.edges import TRAINING_THRESHOLDS, scale_map
from dhde.io.image import load_image, save_image, value_channel
from dhde.labels import NUM_LABELS, SIGMAS

CROPS = {"train": "astronaut", "validation": "coffee", "test": "chelsea"}
MAX_PER_SCALE = 5


def _read(source) -> dict[str, np.ndarray]:
    exs = source.__getitems__(list(range(len(source))))
    keys = ("patch", "scale", "label", "sigma", "row", "col", "source", "image")
    out = {k: np.stack([np.asarray(e[k]) for e in exs]) for k in keys}
    out["source"] = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in out["source"]])
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import skimage.data

    root = tmp_path_factory.mktemp("images")
    files = {}
    for split, name in CROPS.items():
        k = next(k for k in range(100) if split_of(f"{split}{k}.png") == split)
        files[split] = f"{split}{k}.png"
        save_image(root / files[split], load_image(getattr(skimage.data, name)())[100:164, 140:204])
    cfg = make_config(source=f"folder:{root}", max_per_scale=MAX_PER_SCALE, max_images=1, downscale=1)
    a = build(cfg, data_dir=str(tmp_path_factory.mktemp("tfds_a")))
    b = build(cfg, data_dir=str(tmp_path_factory.mktemp("tfds_b")))
    return root, files, {s: _read(a[s]) for s in SPLITS}, {s: _read(b[s]) for s in SPLITS}


def test_downscaled_phases_match_block_mean_then_scipy_blur(built, tmp_path):
    import skimage.transform

    root, files, _, _ = built
    cfg = make_config(source=f"folder:{root}", max_per_scale=MAX_PER_SCALE, max_images=1, downscale=2,
                      noise=0.0)
    d = _read(build(cfg, data_dir=str(tmp_path))["train"])
    assert set(d["source"]) == {files["train"]}  # the split unit stays the photograph
    images = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in d["image"]])
    assert set(images) == {f"{files['train']}@2x{dy}{dx}" for dy in range(2) for dx in range(2)}
    img = np.asarray(Image.open(root / files["train"]).convert("RGB"), np.float64) / 255.0
    for i in range(0, len(d["label"]), 5):
        dy, dx = int(images[i][-2]), int(images[i][-1])
        sub = img[dy:, dx:]
        sub = sub[: sub.shape[0] // 2 * 2, : sub.shape[1] // 2 * 2]
        small = skimage.transform.downscale_local_mean(sub, (2, 2, 1))
        h, w = small.shape[:2]
        r, c, sigma = int(d["row"][i]), int(d["col"][i]), float(SIGMAS[d["label"][i]])
        blur = scipy.ndimage.gaussian_filter(small, (sigma, sigma, 0), mode="nearest",
                                             truncate=BLUR_RADIUS / sigma)
        ref = np.clip(np.round(blur * 255.0), 0, 255)
        rows = np.clip(np.arange(r - 14, r + 15), 0, h - 1)
        cols = np.clip(np.arange(c - 14, c + 15), 0, w - 1)
        assert np.abs(ref[np.ix_(rows, cols)] - d["patch"][i]).max() <= 1, i


def test_area_downscale_matches_skimage_and_validates():
    import skimage.transform

    from dhde.data.sources import area_downscale

    x = np.random.default_rng(0).random((11, 13, 3)).astype(np.float32)
    for k, ph in [(1, (0, 0)), (2, (1, 0)), (3, (2, 1))]:
        sub = x[ph[0]:, ph[1]:]
        sub = sub[: sub.shape[0] // k * k, : sub.shape[1] // k * k]
        np.testing.assert_allclose(area_downscale(x, k, ph), skimage.transform.downscale_local_mean(sub, (k, k, 1)),
                                   atol=1e-6)
    with pytest.raises(ValueError, match="factor"):
        area_downscale(x, 0)
    with pytest.raises(ValueError, match="phase"):
        area_downscale(x, 2, (2, 0))


def test_splits_are_disjoint_by_source_image(built):
    _, files, data, _ = built
    sources = {s: set(data[s]["source"]) for s in SPLITS}
    for s in SPLITS:
        assert sources[s] == {files[s]}, s
    assert not (sources["train"] & sources["validation"] or sources["train"] & sources["test"]
                or sources["validation"] & sources["test"])


def test_every_pixel_blurred_eleven_ways_and_scales_balanced(built):
    _, _, data, _ = built
    for s in SPLITS:
        d = data[s]
        n = len(d["label"])
        assert n > 0 and n % NUM_LABELS == 0
        m = n // NUM_LABELS  # chosen pixels
        np.testing.assert_array_equal(np.bincount(d["label"], minlength=NUM_LABELS), np.full(NUM_LABELS, m))
        np.testing.assert_allclose(d["sigma"], SIGMAS[d["label"]], rtol=1e-6)
        pix = {}
        for r, c, lab, sc in zip(d["row"], d["col"], d["label"], d["scale"]):
            pix.setdefault((int(r), int(c), int(sc)), []).append(int(lab))
        assert len(pix) == m
        assert all(sorted(v) == list(range(NUM_LABELS)) for v in pix.values())
        n1 = sum(1 for (_, _, sc) in pix if sc == 1)
        n2 = sum(1 for (_, _, sc) in pix if sc == 2)
        assert n1 == n2 and 0 < n1 <= MAX_PER_SCALE, (s, n1, n2)
        assert d["patch"].shape == (n, 29, 29, 3) and d["patch"].dtype == np.uint8


NOISE = 3.0  # make_config's default: per-patch noise std uniform in [0, 3] grey levels


def test_patches_match_scipy_blur_plus_noise(built):
    """Each patch = SciPy blur of the source + zero-mean Gaussian noise of std U(0, 3) levels."""
    root, files, data, _ = built
    d = data["train"]
    img = np.asarray(Image.open(root / files["train"]).convert("RGB"), np.float64) / 255.0
    scales = np.asarray(scale_map(value_channel(img.astype(np.float32)), TRAINING_THRESHOLDS))
    h, w = img.shape[:2]
    stds = []
    for i in range(0, len(d["label"]), 3):
        r, c, sigma = int(d["row"][i]), int(d["col"][i]), float(SIGMAS[d["label"][i]])
        assert scales[r, c] == d["scale"][i]
        blur = scipy.ndimage.gaussian_filter(img, (sigma, sigma, 0), mode="nearest",
                                             truncate=BLUR_RADIUS / sigma)
        ref = blur * 255.0
        rows = np.clip(np.arange(r - 14, r + 15), 0, h - 1)
        cols = np.clip(np.arange(c - 14, c + 15), 0, w - 1)
        ref = ref[np.ix_(rows, cols)]
        inside = (ref > 12) & (ref < 243)  # away from clipping at 0 / 255
        res = d["patch"][i].astype(np.float64)[inside] - ref[inside]
        assert abs(res.mean()) < 0.4, (i, res.mean())  # zero-mean
        stds.append(res.std())
    stds = np.asarray(stds)
    # rounding alone gives 0.29; the noise std is uniform in [0, 3]: spread over the range
    assert stds.max() <= np.hypot(NOISE, 0.29) + 0.25, stds.max()
    assert stds.min() < 1.0 and stds.max() > 2.0, (stds.min(), stds.max())
    assert 0.9 < np.median(stds) < 2.2, np.median(stds)


def test_build_is_deterministic(built):
    _, _, a, b = built
    for s in SPLITS:
        for k in a[s]:
            np.testing.assert_array_equal(a[s][k], b[s][k], err_msg=f"{s}/{k}")


def test_source_split_rules():
    names = [n for s in SPLITS for n in SKIMAGE_SPLITS[s]]
    assert len(names) == len(set(names))  # no photograph in two splits
    assert "stereo_motorcycle" not in names  # the evaluation scene
    got = [split_of(f"img{i}.png") for i in range(300)]
    assert got == [split_of(f"img{i}.png") for i in range(300)]
    frac = {s: got.count(s) / len(got) for s in SPLITS}
    assert 0.7 < frac["train"] < 0.9 and frac["validation"] > 0.03 and frac["test"] > 0.03
    assert make_config(max_per_scale=5).name != make_config(max_per_scale=6).name
    assert make_config(seed=1).name != make_config(seed=2).name
    assert make_config(downscale=1).name != make_config(downscale=2).name
    assert make_config(phases=False).name != make_config(phases=True).name
    assert make_config(noise=0).name != make_config(noise=3).name != make_config(noise=2.5).name
    with pytest.raises(ValueError, match="downscale"):
        make_config(downscale=0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="noise"):
            make_config(noise=bad)


def test_in_memory_shuffle_raises_the_tfds_buffer_without_tensorflow(monkeypatch):
    import importlib.util

    from tensorflow_datasets.core import shuffle

    from dhde.data.tfds_compat import in_memory_shuffle

    old = shuffle.MAX_MEM_BUFFER_SIZE
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with in_memory_shuffle():
        assert shuffle.MAX_MEM_BUFFER_SIZE >= old
    assert shuffle.MAX_MEM_BUFFER_SIZE == old
    with pytest.raises(MemoryError, match="install tensorflow"):
        with in_memory_shuffle():
            raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")


def test_make_config_validates_and_names_camera_options():
    base = make_config()
    assert base.name == "skimage_1a4d66_m300_iall_s0_d3p_n3"  # unchanged for the old defaults
    c = make_config(gain_min=0.1, offset=0.03, jpeg=0.5, disk=0.3, screen=True, phases=4)
    assert c.name != base.name and "_scr" in c.name and "p4" in c.name
    assert c.camera().active
    for kw, match in [
        (dict(gain_min=0), "gain_min"), (dict(jpeg=1.5), "jpeg"), (dict(disk=2), "disk"),
        (dict(phases=0), "phases"), (dict(max_per_scale=0), "max_per_scale"), (dict(source=""), "source"),
        (dict(downscale=0), "downscale"), (dict(jpeg_min=99, jpeg_max=60), "jpeg_min"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            make_config(**kw)


def test_image_phases():
    from dhde.data.patch_sampling import image_phases

    assert len(image_phases("a", 3, True)) == 9 and image_phases("a", 3, False) == [(0, 0)]
    p = image_phases("a", 3, 4)
    assert len(p) == 4 and len(set(p)) == 4 and p == image_phases("a", 3, 4)
    assert image_phases("a", 2, 9) == image_phases("a", 2, True)
    with pytest.raises(ValueError, match="phases"):
        image_phases("a", 3, 0)


def test_blurred_patches_with_camera_and_disk(rng):
    from dhde.data.camera import CameraConfig
    from dhde.data.patch_sampling import blurred_context_patches

    img = rng.random((60, 64, 3)).astype(np.float32)
    coords = np.array([[30, 30], [20, 40], [45, 15]], np.int32)
    cam = CameraConfig(gain_min=0.2, offset=0.02, noise=2.0, jpeg=0.5)
    a = blurred_context_patches(img, coords, rng=np.random.default_rng(1), camera=cam, disk=0.5)
    b = blurred_context_patches(img, coords, rng=np.random.default_rng(1), camera=cam, disk=0.5)
    assert a.shape == (NUM_LABELS, 3, 29, 29, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # reproducible from the rng
    clean = blurred_context_patches(img, coords)
    assert np.abs(a.astype(int) - clean.astype(int)).mean() > 5
    with pytest.raises(ValueError, match="rng"):
        blurred_context_patches(img, coords, camera=cam)
    with pytest.raises(ValueError, match="disk"):
        blurred_context_patches(img, coords, rng=rng, disk=1.5)
