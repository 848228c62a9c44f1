"""Image input: every common file kind and array kind -> float32 RGB in [0, 1]; clear errors."""

import numpy as np
import pytest
from PIL import Image

from dhde.io.image import load_image, save_image, value_channel


def _rgb(h=40, w=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_png16_rgb(path, a):
    """A minimal 16-bit RGB PNG encoder (Pillow cannot write this mode)."""
    import struct
    import zlib

    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_png8_roundtrip(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.float32 and out.shape == (40, 50, 3)
    np.testing.assert_allclose(out, a / 255.0, atol=1e-7)


def test_png16_grey_and_rgb(tmp_path):
    g = np.random.default_rng(1).integers(0, 65536, (40, 50), dtype=np.uint16)
    from dhde.io.image import grey16_image

    grey16_image(g).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(out[..., 0], g / 65535.0, atol=1e-6)
    assert np.array_equal(out[..., 0], out[..., 2])
    rgb16 = np.random.default_rng(2).integers(0, 65536, (40, 50, 3), dtype=np.uint16)
    _write_png16_rgb(tmp_path / "c16.png", rgb16)
    out = load_image(tmp_path / "c16.png")
    np.testing.assert_allclose(out, rgb16 / 65535.0, atol=1e-6)  # full 16-bit precision kept


def test_rgba_and_grey_files(tmp_path):
    a = np.dstack([_rgb(), np.full((40, 50), 7, np.uint8)])
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_allclose(load_image(tmp_path / "a.png"), a[..., :3] / 255.0, atol=1e-7)
    g = _rgb()[..., 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    np.testing.assert_allclose(out, np.repeat(g[..., None], 3, -1) / 255.0, atol=1e-7)


def test_jpeg_exif_orientation(tmp_path):
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :10] = 255  # a bright band on the left
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (60, 40, 3)  # transposed by the orientation tag
    assert out[:10].mean() > 0.8 and out[-10:].mean() < 0.2  # band now on top


def test_arrays():
    a = _rgb()
    np.testing.assert_allclose(load_image(a), a / 255.0, atol=1e-7)
    u16 = (a.astype(np.uint16) * 257)
    np.testing.assert_allclose(load_image(u16), a / 255.0, atol=1e-6)
    f = a / 255.0
    np.testing.assert_allclose(load_image(f), f, atol=1e-7)
    assert load_image(f[..., :1]).shape == (40, 50, 3)


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.full((40, 50, 3), np.nan, np.float32), "NaN"),
        (np.zeros((40, 50, 5), np.float32), "shape"),
        (np.zeros((2, 40, 50, 3), np.float32), "shape"),
        (np.zeros((20, 50, 3), np.float32), "at least 27x27"),
        (np.full((40, 50, 3), 2.0, np.float32), r"\[0, 1\]"),
    ],
)
def test_array_errors(arr, match):
    with pytest.raises(ValueError, match=match):
        load_image(arr)


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(TypeError):
        load_image(42)
    with pytest.raises(TypeError):
        load_image(np.array([["a"] * 30] * 30))


def test_value_channel_and_save(tmp_path):
    a = np.random.default_rng(3).random((30, 31, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(value_channel(a)), a.max(-1))
    p = save_image(tmp_path / "sub" / "x.png", a)
    np.testing.assert_allclose(load_image(p), a, atol=0.5 / 255 + 1e-6)
    p16 = save_image(tmp_path / "y.png", a[..., 0], bits=16)
    np.testing.assert_allclose(load_image(p16)[..., 0], a[..., 0], atol=1e-4)


def test_copy_flag_shares_memory_only_when_asked():
    """load_image copies by default; copy=False returns a float32 RGB array as it is (used by
    estimate_defocus, which only reads it), and still converts everything else."""
    a = np.random.default_rng(0).random((30, 31, 3)).astype(np.float32)
    assert not np.shares_memory(load_image(a), a)
    assert np.shares_memory(load_image(a, copy=False), a)
    b = a.astype(np.float64)
    out = load_image(b, copy=False)
    assert out.dtype == np.float32 and not np.shares_memory(out, b)
    np.testing.assert_array_equal(load_image((a * 255).astype(np.uint8), copy=False),
                                  load_image((a * 255).astype(np.uint8)))
