"""Direct loaders and TFDS (array_record) builders on fake layouts and on the reference data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from dhde.evaluation import datasets as D
from dhde.evaluation import metrics as M

TABLE = np.array([[0.3, 0.5], [0.5, 0.75], [0.65, 1.0], [0.775, 1.25], [0.875, 1.5], [1.125, 2.0]])


def _rgb(rng, h, w):
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture
def fake_cuhk(tmp_path, rng):
    root = tmp_path / "cuhk"
    (root / "image").mkdir(parents=True)
    (root / "gt").mkdir()
    expect = {}
    for stem, (h, w) in {"out_of_focus0002": (30, 28), "out_of_focus0001": (29, 33),
                         "motion0001": (30, 30)}.items():
        img = _rgb(rng, h, w)
        Image.fromarray(img).save(root / "image" / f"{stem}.jpg", quality=95)
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2] = 255
        Image.fromarray(mask).save(root / "gt" / f"{stem}.png")
        decoded = np.asarray(Image.open(root / "image" / f"{stem}.jpg")).astype(np.float32) / 255
        expect[stem] = (decoded, mask > 127)
    return root, expect


@pytest.fixture
def fake_rtf(tmp_path, rng):
    root = tmp_path / "rtf"
    root.mkdir()
    expect = {}
    for i, (h, w) in [(1, (28, 30)), (2, (27, 27))]:
        img = _rgb(rng, h, w)
        Image.fromarray(img).save(root / f"image_{i:02d}.png")
        radius = rng.choice(TABLE[:, 1], size=(h, w))
        scipy.io.savemat(root / f"map_{i:02d}.mat", {"blurMap": radius})
        sigma = TABLE[np.searchsorted(TABLE[:, 1], radius), 0]  # table rows: exact lookup
        expect[f"image_{i:02d}"] = (img.astype(np.float32) / 255, sigma)
    scipy.io.savemat(root / "convertion.mat", {"convertion": TABLE})
    return root, expect


def test_load_cuhk(fake_cuhk):
    root, expect = fake_cuhk
    exs = list(D.load_cuhk(root))
    assert [e["name"] for e in exs] == ["out_of_focus0001", "out_of_focus0002"]  # motion* left out
    for e in exs:
        img, mask = expect[e["name"]]
        assert e["image"].dtype == np.float32 and e["mask"].dtype == np.bool_
        np.testing.assert_array_equal(e["image"], img)
        np.testing.assert_array_equal(e["mask"], mask)
    assert len(list(D.load_cuhk(root, pattern="*"))) == 3


def test_cuhk_layout_errors(fake_cuhk, tmp_path):
    root, _ = fake_cuhk
    with pytest.raises(ValueError, match="not found"):
        D.load_cuhk(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no image matching"):
        D.load_cuhk(root, pattern="zzz*")
    (root / "gt" / "out_of_focus0002.png").unlink()
    with pytest.raises(ValueError, match="without a gt"):
        D.load_cuhk(root)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "gt" / "out_of_focus0002.png")
    with pytest.raises(ValueError, match="differ in size"):
        list(D.load_cuhk(root))


def test_load_rtf(fake_rtf):
    root, expect = fake_rtf
    exs = list(D.load_rtf(root))
    assert [e["name"] for e in exs] == ["image_01", "image_02"]
    for e in exs:
        img, sigma = expect[e["name"]]
        np.testing.assert_array_equal(e["image"], img)
        assert e["sigma_map"].dtype == np.float32
        np.testing.assert_allclose(e["sigma_map"], sigma, rtol=1e-6)


def test_rtf_layout_errors(fake_rtf):
    root, _ = fake_rtf
    (root / "convertion.mat").unlink()
    with pytest.raises(ValueError, match="convertion.mat"):
        D.load_rtf(root)
    scipy.io.savemat(root / "convertion.mat", {"convertion": TABLE})
    (root / "map_02.mat").unlink()
    with pytest.raises(ValueError, match="map_02.mat"):
        D.load_rtf(root)


def _same(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], str):
            assert a[k] == b[k]
        else:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
            np.testing.assert_array_equal(a[k], b[k])


def test_tfds_cuhk_array_record(fake_cuhk, tmp_path):
    import tensorflow_datasets as tfds

    root, _ = fake_cuhk
    data_dir = tmp_path / "tfds"
    ds = D.build_data_source("cuhk", data_dir=data_dir, root=root)
    assert len(ds) == 2
    assert list((data_dir / "dhde_cuhk" / "1.0.0").glob("*.array_record-*"))
    rec = ds[0]
    assert rec["image"].dtype == np.uint8 and rec["mask"].dtype == np.bool_
    for rec, ex in zip([ds[i] for i in range(len(ds))], D.load_cuhk(root)):
        _same(D.decode_record(rec), ex)
    # reopened without the builder class, from the written files only
    again = tfds.builder_from_directory(str(data_dir / "dhde_cuhk" / "1.0.0")).as_data_source("test")
    assert D.decode_record(again[1])["name"] == "out_of_focus0002"
    assert len(tfds.data_source("dhde_cuhk", data_dir=str(data_dir), split="test")) == 2


def test_tfds_rtf_array_record(fake_rtf, tmp_path):
    root, _ = fake_rtf
    ds = D.build_data_source("rtf", data_dir=tmp_path / "tfds", root=root)
    assert len(ds) == 2
    for i, ex in enumerate(D.load_rtf(root)):
        _same(D.decode_record(ds[i]), ex)


def test_tfds_stereo_motorcycle(tmp_path):
    cfg = D.StereoMotorcycleConfig(name="tiny", downscale=8)
    ds = D.build_data_source("stereo_motorcycle", data_dir=tmp_path / "tfds", config=cfg)
    assert len(ds) == 1
    rec = D.decode_record(ds[0])
    (ex,) = D.load_stereo_motorcycle(downscale=8)
    _same(rec, ex)
    assert rec["name"] == "stereo_motorcycle_near" and rec["image"].shape == (62, 92, 3)


def test_build_data_source_errors(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        D.build_data_source("imagenet", data_dir=tmp_path)
    with pytest.raises(ValueError, match="root"):
        D.build_data_source("cuhk", data_dir=tmp_path, root=None)


# --------------------------------------------------------------- the reference data (skips)


def test_real_cuhk(shared_data, tmp_path):
    exs = list(D.load_cuhk(shared_data / "cuhk"))
    assert [e["name"] for e in exs] == ["out_of_focus0011", "out_of_focus0031",
                                        "out_of_focus0035", "out_of_focus0142"]
    for e in exs:
        assert e["image"].shape[:2] == e["mask"].shape and e["image"].shape[1] == 640
        assert 0.05 < e["mask"].mean() < 0.95  # both classes present
    ds = D.build_data_source("cuhk", data_dir=tmp_path / "tfds", root=shared_data / "cuhk")
    assert len(ds) == 4
    _same(D.decode_record(ds[3]), exs[3])


def test_real_rtf(shared_data, tmp_path):
    (ex,) = list(D.load_rtf(shared_data / "rtf"))
    assert ex["name"] == "image_01" and ex["image"].shape == (360, 360, 3)
    radius = scipy.io.loadmat(shared_data / "rtf" / "map_01.mat")["blurMap"]
    table = M.load_conversion_table(shared_data / "rtf" / "convertion.mat")
    assert table.shape == (23, 2)
    np.testing.assert_allclose(ex["sigma_map"], np.interp(radius, table[:, 1], table[:, 0]), rtol=1e-6)
    assert ex["sigma_map"].min() == pytest.approx(0.3) and ex["sigma_map"].max() == pytest.approx(1.925)
    ds = D.build_data_source("rtf", data_dir=tmp_path / "tfds", root=shared_data / "rtf")
    _same(D.decode_record(ds[0]), ex)
