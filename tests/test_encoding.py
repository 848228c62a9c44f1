"""Scale encodings and feature-set names vs hand-written expectations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dhde.features import encoding as E


def _bins(rng, n):
    return (rng.random((n, 25), dtype=np.float32) + 0.1, rng.random((n, 13), dtype=np.float32) + 0.1)


def _expected(large, small, is_small, encoding, cl, cs):
    """Row-by-row reference written from the paper's Figure 7 description."""
    rows = []
    for lb, sb, s in zip(large, small, is_small):
        if encoding == "separate":
            r = [0.0] * 25 + [0.0] + list(sb) + [cs] if s else list(lb) + [cl] + [0.0] * 13 + [0.0]
        elif encoding == "separate_no_constants":
            r = [0.0] * 25 + list(sb) if s else list(lb) + [0.0] * 13
        elif encoding == "shared":
            r = list(sb) + [0.0] * 12 + [cs] if s else list(lb) + [cl]
        else:  # single_scale
            r = list(lb) + [cl]
        rows.append(r)
    return np.asarray(rows, np.float32)


@pytest.mark.parametrize("encoding", E.ENCODINGS)
def test_encode_matches_figure7(rng, encoding):
    large, small = _bins(rng, 7)
    is_small = np.array([0, 1, 1, 0, 1, 0, 0], bool)
    out = E.encode_scale(large, small, is_small, encoding, c_large=2.0, c_small=3.0)
    assert out.dtype == jnp.float32
    assert out.shape == (7, E.encoded_width(encoding))
    np.testing.assert_array_equal(np.asarray(out), _expected(large, small, is_small, encoding, 2.0, 3.0))


def test_separate_layout_by_hand():
    large = np.arange(1, 26, dtype=np.float32)[None]
    small = np.arange(101, 114, dtype=np.float32)[None]
    lg = np.asarray(E.encode_scale(large, small, np.array([False])))[0]
    sm = np.asarray(E.encode_scale(large, small, np.array([True])))[0]
    assert lg.shape == sm.shape == (40,)
    np.testing.assert_array_equal(lg[:25], np.arange(1, 26))
    assert lg[25] == 1.0 and not lg[26:].any()
    assert not sm[:26].any() and sm[39] == 1.0
    np.testing.assert_array_equal(sm[26:39], np.arange(101, 114))


def test_widths_and_bins():
    assert [E.encoded_width(e) for e in E.ENCODINGS] == [40, 38, 26, 26]
    assert E.bins_for("separate") == (25, 13) == E.bins_for("shared") == E.bins_for("separate_no_constants")
    assert E.bins_for("single_scale") == (25, 0)
    with pytest.raises(ValueError, match="unknown scale encoding"):
        E.encoded_width("fig7")
    with pytest.raises(ValueError, match="unknown scale encoding"):
        E.bins_for("Separate")


def test_single_scale_ignores_small():
    large = np.ones((3, 25), np.float32)
    out = E.encode_scale(large, None, np.array([True, False, True]), "single_scale", c_large=5.0)
    np.testing.assert_array_equal(np.asarray(out), np.concatenate([large, np.full((3, 1), 5.0, np.float32)], 1))


@pytest.mark.parametrize("encoding", E.ENCODINGS)
def test_jit_equals_eager_and_no_recompile(rng, encoding):
    large, small = _bins(rng, 6)
    is_small = rng.random(6) < 0.5
    eager = E.encode_scale(large, small, is_small, encoding, 1.5, 0.5)
    f = jax.jit(lambda a, b, s, cl: E.encode_scale(a, b, s, encoding, cl, 0.5))
    np.testing.assert_array_equal(np.asarray(f(large, small, is_small, 1.5)), np.asarray(eager))
    f(large + 1, small, ~is_small, 2.5)
    assert f._cache_size() == 1
    before = E._encode._cache_size()
    E.encode_scale(large * 2, small, ~is_small, encoding, 0.5, 2.0)
    assert E._encode._cache_size() == before


def test_vmap_equals_loop(rng):
    large, small = _bins(rng, 8)
    is_small = rng.random(8) < 0.5
    f = jax.vmap(lambda a, b, s: E.encode_scale(a[None], b[None], s[None])[0])
    loop = np.stack([np.asarray(E.encode_scale(large[i : i + 1], small[i : i + 1], is_small[i : i + 1]))[0]
                     for i in range(8)])
    np.testing.assert_array_equal(np.asarray(f(large, small, is_small)), loop)


def test_encode_validation(rng):
    large, small = _bins(rng, 4)
    s = np.zeros(4, bool)
    with pytest.raises(ValueError, match="large_bins must be"):
        E.encode_scale(large[:, :13], small, s)
    with pytest.raises(ValueError, match="small_bins must be"):
        E.encode_scale(large, small[:3], s)
    with pytest.raises(ValueError, match="is_small must be"):
        E.encode_scale(large, small, s[:3])
    with pytest.raises(TypeError, match="is_small must be boolean"):
        E.encode_scale(large, small, s.astype(np.float32))
    with pytest.raises(ValueError, match="NaN"):
        E.encode_scale(np.where(np.eye(4, 25) > 0, np.nan, large), small, s)
    with pytest.raises(ValueError, match="c_large must be a finite scalar"):
        E.encode_scale(large, small, s, c_large=float("inf"))
    with pytest.raises(ValueError, match="unknown scale encoding"):
        E.encode_scale(large, small, s, "both")


@pytest.mark.parametrize(
    "name, comps",
    [
        ("D", ("D",)), ("G", ("G",)), ("S", ("S",)), ("C", ("C",)),
        ("H", ("D", "G", "S")), ("B", ("D", "G", "S", "C")), ("H+C", ("D", "G", "S", "C")),
        ("D+S+C", ("D", "S", "C")), ("C+S+D", ("D", "S", "C")), ("G + S + C", ("G", "S", "C")),
    ],
)
def test_parse_feature_set(name, comps):
    assert E.parse_feature_set(name) == comps


@pytest.mark.parametrize("bad, msg", [("X", "unknown feature"), ("D+", "unknown feature"), ("", "non-empty"),
                                      ("H+D", "appears twice"), ("B+C", "appears twice"), ("d", "unknown"),
                                      (None, "non-empty")])
def test_parse_feature_set_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        E.parse_feature_set(bad)


@pytest.mark.parametrize(
    "fs, enc, width",
    [
        ("B", "separate", 145), ("H", "separate", 120), ("C", "separate", 25), ("D+S+C", "separate", 105),
        ("G+S+C", "separate", 105), ("S", "separate", 40), ("B", "separate_no_constants", 3 * 38 + 25),
        ("B", "shared", 3 * 26 + 25), ("B", "single_scale", 103), ("H+C", "separate", 145),
        ("C", "single_scale", 25),
    ],
)
def test_input_width(fs, enc, width):
    assert E.input_width(fs, enc) == width


def test_input_width_validates():
    with pytest.raises(ValueError, match="unknown scale encoding"):
        E.input_width("C", "nope")
