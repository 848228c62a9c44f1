"""Pseudo-depth, 16-bit depth PNG and PLY point clouds (parsed back here)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dhde.applications import point_cloud, pseudo_depth, save_depth_png, save_point_cloud_ply
from dhde.applications.depth import _pseudo_depth_impl
from dhde.filters.gaussian import gaussian_kernel1d


def _ref_depth(d):
    d = d.astype(np.float64)
    return (d - d.min()) / (d.max() - d.min())


def test_pseudo_depth_normalises(rng):
    d = (0.5 + 1.5 * rng.random((20, 30))).astype(np.float32)
    near = np.asarray(pseudo_depth(d))
    np.testing.assert_allclose(near, _ref_depth(d), atol=1e-6)
    assert near.min() == 0.0 and near.max() == pytest.approx(1.0)
    # Scene in front of the focal plane: most blurred = nearest = 0.
    far = np.asarray(pseudo_depth(d, near_is_sharp=False))
    np.testing.assert_allclose(far, 1.0 - _ref_depth(d), atol=1e-6)
    assert far[np.unravel_index(d.argmax(), d.shape)] == 0.0


def test_pseudo_depth_smoothing_matches_reflect_filter(rng):
    d = (2.0 * rng.random((20, 30))).astype(np.float32)
    k = gaussian_kernel1d(1.5)
    ref = ndimage.correlate1d(d.astype(np.float64), k, axis=0, mode="reflect")
    ref = ndimage.correlate1d(ref, k, axis=1, mode="reflect")
    np.testing.assert_allclose(np.asarray(pseudo_depth(d, smooth_sigma=1.5)), _ref_depth(ref), atol=1e-4)


def test_constant_map_gives_zeros():
    for near in (True, False):
        out = np.asarray(pseudo_depth(np.full((8, 9), 1.3, np.float32), near_is_sharp=near))
        np.testing.assert_array_equal(out, 0.0)


def test_jit_equals_eager_and_no_recompilation(rng):
    d = (2.0 * rng.random((12, 10))).astype(np.float32)
    jitted = np.asarray(_pseudo_depth_impl(d, np.float32(1.0), True, True))
    with jax.disable_jit():
        eager = np.asarray(_pseudo_depth_impl(d, np.float32(1.0), True, True))
    np.testing.assert_allclose(jitted, eager, atol=1e-6)
    pseudo_depth(d, smooth_sigma=1.0)
    n = _pseudo_depth_impl._cache_size()
    pseudo_depth(d * 3.0, smooth_sigma=2.5)
    assert _pseudo_depth_impl._cache_size() == n


def test_save_depth_png_is_16_bit(tmp_path, rng):
    depth = rng.random((9, 13)).astype(np.float32)
    path = save_depth_png(tmp_path / "sub" / "depth.png", depth)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
        back = np.asarray(im).astype(np.int64)
    np.testing.assert_array_equal(back, np.round(depth.astype(np.float64) * 65535).astype(np.int64))


def _read_ply(path):
    """Minimal PLY reader (ascii and binary_little_endian) for the vertex layout we write."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    assert header[0] == "ply"
    fmt = header[1].split()
    assert fmt[0] == "format" and fmt[2] == "1.0"
    elements = [line.split() for line in header if line.startswith("element")]
    assert len(elements) == 1 and elements[0][1] == "vertex"
    n = int(elements[0][2])
    props = [tuple(line.split()[1:]) for line in header if line.startswith("property")]
    assert props == [
        ("float", "x"), ("float", "y"), ("float", "z"),
        ("uchar", "red"), ("uchar", "green"), ("uchar", "blue"),
    ]
    assert header[-1] == "end_header"
    body = raw[end:]
    if fmt[1] == "binary_little_endian":
        dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
        assert len(body) == n * dt.itemsize  # 15 bytes per vertex, nothing trailing
        rec = np.frombuffer(body, dtype=dt)
        xyz = np.stack([rec["x"], rec["y"], rec["z"]], -1).astype(np.float64)
        rgb = np.stack([rec["r"], rec["g"], rec["b"]], -1).astype(np.int64)
    else:
        assert fmt[1] == "ascii"
        rows = np.array([line.split() for line in body.decode("ascii").splitlines()], dtype=np.float64)
        assert rows.shape == (n, 6)
        xyz, rgb = rows[:, :3], rows[:, 3:].astype(np.int64)
    return n, xyz, rgb


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("step", [1, 3])
def test_point_cloud_ply_round_trip(tmp_path, rng, binary, step):
    h, w, z_scale = 10, 14, 7.0
    image = rng.random((h, w, 3)).astype(np.float32)
    depth = rng.random((h, w)).astype(np.float32)
    path = save_point_cloud_ply(tmp_path / "c.ply", image, depth, step=step, z_scale=z_scale, binary=binary)
    n, xyz, rgb = _read_ply(path)
    assert n == -(-h // step) * -(-w // step)
    # Brute-force expected vertices in row-major order over the kept pixels.
    exp_xyz, exp_rgb = [], []
    for r in range(0, h, step):
        for c in range(0, w, step):
            exp_xyz.append([c - (w - 1) / 2, (h - 1) / 2 - r, -depth[r, c] * z_scale])
            exp_rgb.append(np.round(image[r, c].astype(np.float64) * 255))
    np.testing.assert_allclose(xyz, np.array(exp_xyz), atol=1e-4)
    np.testing.assert_array_equal(rgb, np.array(exp_rgb, dtype=np.int64))


def test_point_cloud_default_scale():
    image = np.zeros((4, 8, 3), np.float32)
    depth = np.ones((4, 8), np.float32)
    xyz, rgb = point_cloud(image, depth)
    assert xyz.shape == (32, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(xyz[:, 2], -0.25 * 8)


@pytest.mark.parametrize(
    "fn,args,kwargs,exc,match",
    [
        (pseudo_depth, (np.full((4, 4), np.nan, np.float32),), {}, ValueError, "NaN"),
        (pseudo_depth, (-np.ones((4, 4), np.float32),), {}, ValueError, "negative"),
        (pseudo_depth, (np.ones((4, 4, 1), np.float32),), {}, ValueError, r"\(H, W\)"),
        (pseudo_depth, (np.ones((4, 4), np.float32),), {"smooth_sigma": -1.0}, ValueError, "smooth_sigma"),
        (pseudo_depth, (np.ones((4, 4), np.float32),), {"near_is_sharp": "yes"}, TypeError, "near_is_sharp"),
        (pseudo_depth, ("map",), {}, TypeError, "array"),
        (save_depth_png, ("x.png", np.full((4, 4), 1.5, np.float32)), {}, ValueError, r"\[0, 1\]"),
        (save_depth_png, ("x.png", np.ones((4, 4, 3), np.float32)), {}, ValueError, r"\(H, W\)"),
        (point_cloud, (np.zeros((4, 4, 3), np.float32), np.zeros((4, 5), np.float32)), {}, ValueError, "shape"),
        (point_cloud, (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.float32)), {"step": 0}, ValueError, "step"),
        (point_cloud, (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.float32)), {"z_scale": 0.0}, ValueError, "z_scale"),
        (point_cloud, (np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)), {}, ValueError, r"\(H, W, 3\)"),
    ],
)
def test_validation(tmp_path, monkeypatch, fn, args, kwargs, exc, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)
