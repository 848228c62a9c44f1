"""Source screening (photographs only, sharp edges only), Debian sources, manifest and split."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.special import erf

from dhde.data import debian
from dhde.data.screening import RULES, image_stats, reblur_sigma, screen, sharp_edge_mask
from dhde.data.sources import MIN_TEST_IMAGES, iter_source, screen_candidates, source_entries


def _edge(sigma, n=48):
    x = np.arange(n) - n / 2 + 0.3
    e = 0.5 * (1 + erf(x / (np.sqrt(2) * sigma)))
    return np.tile(e, (n, 1)) * 0.6 + 0.2


def test_reblur_sigma_on_synthetic_edges():
    got = []
    for s in (0.05, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0):
        img = _edge(s)
        g = np.hypot(*np.gradient(img))
        col = int(np.argmax(g[24]))
        got.append(float(reblur_sigma(img)[24, col]))
    assert np.all(np.diff(got) > 0)  # monotone in the true blur
    np.testing.assert_allclose(got[0], 0.84, atol=0.05)    # an ideal step
    np.testing.assert_allclose(got[2], 1.00, atol=0.05)    # documented calibration points
    np.testing.assert_allclose(got[3], 1.22, atol=0.05)
    np.testing.assert_allclose(got[-1], 3.0, atol=0.15)   # wide blur: the estimate is unbiased
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        reblur_sigma(np.zeros((4, 4, 3)))


def test_sharp_edge_mask_keeps_sharp_drops_blurred():
    img = np.concatenate([_edge(0.3), _edge(2.0)], axis=1)
    scales = np.zeros(img.shape, np.int32)
    scales[:, 24] = 2   # on the sharp edge
    scales[:, 72] = 2   # on the blurred one
    m = sharp_edge_mask(img, scales)
    assert m[5:-5, 24].all() and not m[5:-5, 72].any()
    assert not m[scales == 0].any()
    with pytest.raises(ValueError, match="shape"):
        sharp_edge_mask(img, scales[:-1])


def _photo_like(rng, h=120, w=160):
    y, x = np.mgrid[:h, :w]
    base = np.stack([(x // 16 % 2) * 0.5 + 0.2, (y // 12 % 2) * 0.4 + 0.3, np.full((h, w), 0.5)], -1)
    return np.clip(base + rng.normal(0, 0.02, (h, w, 3)), 0, 1)


def test_image_stats_and_rules(rng):
    photo = _photo_like(rng)
    scales = np.zeros(photo.shape[:2], np.int32)
    scales[:, ::16] = 2
    st = image_stats(photo, scales)
    assert st["flat"] < 0.05 and st["colors"] > 0.5 and st["sharp_share"] > 0.5
    assert screen(st) == (True, "photograph")
    flat = np.zeros_like(photo) + 0.5
    flat[:, 80:] = 0.8  # an illustration: two flat colours
    st2 = image_stats(flat, scales)
    ok, why = screen(st2)
    assert not ok and "rendering" in why
    assert not screen({**st, "h": 50})[0]
    assert "strong edges" in screen({**st, "strong": 0.0})[1]
    assert "out of focus" in screen({**st, "sharp_share": 0.1})[1]
    assert "painting" in screen(st, name="opencv-doc/starry_night.jpg")[1]


def _fake_packages(root, rng):
    def save(p, arr):
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((arr * 255).astype(np.uint8)).save(p)

    ex = root / "usr/share/doc/opencv-doc/examples/data"
    for i in range(3):
        save(ex / f"p{i}.png", _photo_like(rng))
    wp = root / "usr/share/wallpapers/Foo/contents/images"
    save(wp / "640x480.png", _photo_like(rng, 48, 64))
    save(wp / "1280x960.png", _photo_like(rng, 96, 128))
    mate = root / "usr/share/backgrounds/mate/nature"
    save(mate / "Tree.jpg", _photo_like(rng))
    save(mate / "Tree_3840x2160.jpg", _photo_like(rng, 130, 170))
    (root / "usr/share/backgrounds/gnome").mkdir(parents=True)


def test_debian_candidates_from_a_fixture_tree(tmp_path, rng):
    _fake_packages(tmp_path, rng)
    c = debian.candidates("all", root=tmp_path)
    names = [x.name for x in c]
    assert names == sorted(names)
    assert "plasma-workspace-wallpapers/Foo" in names
    foo = next(x for x in c if x.name == "plasma-workspace-wallpapers/Foo")
    assert foo.path.name == "1280x960.png"  # the largest resolution of a wallpaper
    tree = [x for x in c if x.name.startswith("mate-backgrounds/nature/Tree")]
    assert len(tree) == 1 and tree[0].path.name == "Tree_3840x2160.jpg"


def test_debian_errors(tmp_path):
    with pytest.raises(ValueError, match="apt-get install -y opencv-doc"):
        debian.candidates("opencv-doc", root=tmp_path)
    for held in ("lomiri-wallpapers", "lomiri-wallpapers-legacy", "ukui-wallpapers"):
        with pytest.raises(ValueError, match="held-out"):
            debian.parse_packages(f"opencv-doc+{held}")
    with pytest.raises(ValueError, match="unsupported"):
        debian.parse_packages("foo-backgrounds")
    with pytest.raises(ValueError, match="twice"):
        debian.parse_packages("opencv-doc+opencv-doc")
    with pytest.raises(TypeError):
        debian.parse_packages(3)


def test_scene_of_groups_pairs():
    assert debian.scene_of("opencv-doc/right07.jpg") == "opencv-doc/left07.jpg"
    assert debian.scene_of("opencv-doc/aloeR.jpg") == "opencv-doc/aloeL.jpg"
    assert debian.scene_of("opencv-doc/baboon.jpg") == "opencv-doc/baboon.jpg"


def test_screen_candidates_bad_files_and_manifest(tmp_path, rng, capsys):
    good = []
    for i in range(4):
        p = tmp_path / f"ok{i}.png"
        Image.fromarray((_photo_like(rng) * 255).astype(np.uint8)).save(p)
        good.append((p.name, p))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tiny)
    grey = tmp_path / "grey.png"
    Image.fromarray((rng.random((90, 90)) * 255).astype(np.uint8)).save(grey)
    deep = tmp_path / "deep.png"
    Image.fromarray((rng.random((90, 90)) * 65535).astype(np.uint16)).save(deep)
    files = good + [(p.name, p) for p in (bad, tiny, grey, deep)]
    entries = screen_candidates(files, downscale=1, photos_only=False)
    out = capsys.readouterr().out
    by = {e["name"]: e for e in entries}
    assert "unreadable" in by["broken.jpg"]["reason"] and "broken.jpg" in out
    assert "20x20" in by["tiny.png"]["reason"] and "tiny.png" in out
    assert "greyscale" in by["grey.png"]["reason"]
    assert "16-bit" in by["deep.png"]["reason"]
    for e in entries:
        assert set(e) >= {"name", "file", "sha256", "bytes", "kept", "reason", "split"}
        assert (e["split"] is None) == (not e["kept"])
    assert all(by[n]["kept"] for n, _ in good)
    assert by["ok0.png"]["sha256"] and by["ok0.png"]["bytes"] > 0


def test_photo_split_holds_out_whole_scenes(tmp_path, rng):
    files = []
    for i in range(24):
        p = tmp_path / f"s{i}.png"
        Image.fromarray((_photo_like(rng) * 255).astype(np.uint8)).save(p)
        files.append((f"s{i}", p))
    scene = lambda n: "pair" if n in ("s0", "s1") else n  # noqa: E731
    e = screen_candidates(files, downscale=1, photos_only=True, scene_of=scene, rules={**RULES, "min_strong": 0})
    split = {x["name"]: x["split"] for x in e}
    assert sum(v == "test" for v in split.values()) >= MIN_TEST_IMAGES
    assert sum(v == "validation" for v in split.values()) >= 2
    assert sum(v == "train" for v in split.values()) >= 1
    assert split["s0"] == split["s1"]
    again = screen_candidates(files, downscale=1, photos_only=True, scene_of=scene, rules={**RULES, "min_strong": 0})
    assert split == {x["name"]: x["split"] for x in again}  # deterministic


def test_iter_source_joins_and_validates(tmp_path, rng):
    for i in range(3):
        Image.fromarray((_photo_like(rng) * 255).astype(np.uint8)).save(tmp_path / f"x{i}.png")
    assert source_entries("skimage", 3) is None
    names = [n for s in ("train", "validation", "test") for n, _ in iter_source(f"folder:{tmp_path}", s, downscale=1)]
    assert sorted(names) == ["x0.png", "x1.png", "x2.png"]
    with pytest.raises(ValueError, match="unknown training source"):
        list(iter_source("nope:x", "train"))
    with pytest.raises(ValueError, match="non-empty"):
        list(iter_source("", "train"))


def test_check_installed_and_config_check(tmp_path):
    from dhde.config.check import ConfigError
    from dhde.training.config import check_data_config

    with pytest.raises(ValueError, match="apt-get install -y mate-backgrounds"):
        debian.check_installed("mate-backgrounds", root=tmp_path)
    (tmp_path / "usr/share/backgrounds/mate").mkdir(parents=True)
    assert debian.check_installed("mate-backgrounds", root=tmp_path) == ("mate-backgrounds",)
    with pytest.raises(ConfigError, match="held-out"):
        check_data_config({"data": {"source": "skimage,debian:ukui-wallpapers"}})
    with pytest.raises(ConfigError, match="data.gain_min"):
        check_data_config({"data": {"source": "skimage", "gain_min": 0}})
    with pytest.raises(ConfigError, match="data.disk"):
        check_data_config({"data": {"source": "skimage", "disk": 3}})
    with pytest.raises(ConfigError, match="data.phases"):
        check_data_config({"data": {"source": "skimage", "phases": 0}})
    with pytest.raises(ConfigError, match="sub-folders"):
        check_data_config({"data": {"source": f"folders:{tmp_path}"}})
    check_data_config({"data": {"source": "skimage", "phases": 4, "gain_min": 0.1, "jpeg": 0.5, "disk": 0.3}})
