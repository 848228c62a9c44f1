"""Evaluation metrics vs brute-force references written here (no sklearn)."""

from __future__ import annotations

import numpy as np
import pytest

from dhde.evaluation import metrics as M
from dhde.evaluation import pr_curves as P


# ----------------------------------------------------------------- brute-force references


def ref_norm(d):
    d = np.asarray(d, np.float64)
    lo, hi = d.min(), d.max()
    return np.zeros_like(d) if hi == lo else (d - lo) / (hi - lo)


def ref_counts(d, g, thresholds):
    """Pixel loop over thresholds: TP, FP, FN, TN at 'normalised > t'."""
    n = ref_norm(d).ravel()
    g = np.asarray(g, bool).ravel()
    out = []
    for t in thresholds:
        tp = fp = fn = tn = 0
        for v, y in zip(n, g):
            p = v > t
            tp += p and y
            fp += p and not y
            fn += (not p) and y
            tn += (not p) and not y
        out.append((tp, fp, fn, tn))
    return np.array(out, np.int64)


def div(a, b):
    return a / b if b > 0 else 1.0


def ref_pr(maps, gts, thresholds, average):
    if average == "pixels":
        c = sum(ref_counts(d, g, thresholds) for d, g in zip(maps, gts))
        p = np.array([div(tp, tp + fp) for tp, fp, _, _ in c])
        r = np.array([div(tp, tp + fn) for tp, _, fn, _ in c])
        return p, r
    ps, rs = [], []
    for d, g in zip(maps, gts):
        c = ref_counts(d, g, thresholds)
        ps.append([div(tp, tp + fp) for tp, fp, _, _ in c])
        rs.append([div(tp, tp + fn) for tp, _, fn, _ in c])
    return np.mean(ps, 0), np.mean(rs, 0)


def random_case(rng, shape=(9, 11)):
    d = rng.normal(size=shape).astype(np.float32)
    g = rng.random(shape) > 0.4
    return d, g


# ----------------------------------------------------------------- segmentation accuracy


def test_segmentation_accuracy_matches_loop(rng):
    d, g = random_case(rng)
    for alpha in (0.0, 0.3, 0.5, 1.0):
        tau = alpha * d.max() + (1 - alpha) * d.min()
        correct = sum(int((d[i, j] > tau) == g[i, j]) for i in range(d.shape[0]) for j in range(d.shape[1]))
        assert M.segmentation_accuracy(d, g, alpha) == pytest.approx(correct / d.size)
        assert M.segmentation_threshold(d, alpha) == pytest.approx(float(tau))


def test_segmentation_accuracy_perfect_and_inverted():
    d = np.array([[0.5, 0.6, 2.0, 1.9]] * 3, np.float32)
    g = d > 1.0
    assert M.segmentation_accuracy(d, g) == 1.0
    assert M.segmentation_accuracy(-d, g) == 0.0
    assert M.segment(d).tolist() == g.tolist()


def test_segmentation_constant_map_predicts_all_sharp():
    d = np.full((4, 5), 1.25, np.float32)
    g = np.zeros((4, 5), bool)
    g[:1] = True
    assert M.segmentation_accuracy(d, g) == pytest.approx(0.75)
    assert M.segmentation_accuracy(d, np.ones((4, 5), bool)) == 0.0  # all-blurred gt


def test_mask_formats():
    m = np.zeros((3, 4), np.uint8)
    m[0] = 255
    expect = m > 0
    for mask in (m, expect, expect.astype(np.uint8), expect.astype(np.float32), np.stack([m] * 3, -1)):
        assert M.as_binary_mask(mask).tolist() == expect.tolist()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.as_binary_mask(m.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        M.as_binary_mask(np.zeros((2, 2, 2, 2)))


@pytest.mark.parametrize(
    "d, g, match",
    [
        (np.zeros((3,)), np.zeros((3,), bool), "shape"),
        (np.zeros((3, 4)), np.zeros((4, 3), bool), "same shape"),
        (np.array([[np.nan, 1.0]]), np.zeros((1, 2), bool), "NaN"),
        (np.zeros((0, 4)), np.zeros((0, 4), bool), "empty"),
    ],
)
def test_bad_inputs_raise(d, g, match):
    with pytest.raises(ValueError, match=match):
        M.segmentation_accuracy(d, g)
    with pytest.raises(ValueError, match=match):
        M.normalized_mae(d, g)


def test_bad_alpha_and_types():
    d, g = np.zeros((2, 2)), np.zeros((2, 2), bool)
    with pytest.raises(ValueError, match="alpha"):
        M.segmentation_accuracy(d, g, alpha=1.5)
    with pytest.raises(TypeError):
        M.segmentation_accuracy("abc", g)
    with pytest.raises(TypeError):
        M.segmentation_accuracy(np.zeros((2, 2), bool), g)
    with pytest.raises(ValueError, match="n_thresholds"):
        P.best_threshold_accuracy(d, g, n_thresholds=1)


# ----------------------------------------------------------------- sweeps


def test_counts_match_loop(rng):
    d, g = random_case(rng)
    c = P.precision_recall_counts(d, g, n_thresholds=17)
    ref = ref_counts(d, g, c.thresholds)
    np.testing.assert_array_equal(c.tp, ref[:, 0])
    np.testing.assert_array_equal(c.fp, ref[:, 1])
    np.testing.assert_array_equal(c.fn, ref[:, 2])
    np.testing.assert_array_equal(c.tn, ref[:, 3])
    assert c.thresholds[0] == -np.inf and c.thresholds.shape == (18,)
    assert c.tp[0] == g.sum() and c.fp[-1] == 0  # -inf: all blurred; t = 1: none above the max


def test_best_threshold_accuracy_matches_loop(rng):
    for _ in range(3):
        d, g = random_case(rng)
        t = P.sweep_thresholds(33)
        ref = ref_counts(d, g, t)
        expect = ((ref[:, 0] + ref[:, 3]) / d.size).max()
        got = P.best_threshold_accuracy(d, g, n_thresholds=33)
        assert got == pytest.approx(expect)
        # alpha on the grid: the sweep contains the Eq. 13 segmentation
        assert got >= M.segmentation_accuracy(d, g, alpha=0.25) - 1e-12
        assert got >= max(g.mean(), 1 - g.mean()) - 1e-12


def test_best_threshold_accuracy_edge_cases():
    d = np.full((3, 3), 2.0)
    assert P.best_threshold_accuracy(d, np.ones((3, 3), bool)) == 1.0  # all-blurred gt
    assert P.best_threshold_accuracy(d, np.zeros((3, 3), bool)) == 1.0  # all-sharp gt
    g = np.zeros((3, 3), bool)
    g[0] = True
    assert P.best_threshold_accuracy(d, g) == pytest.approx(2 / 3)


@pytest.mark.parametrize("average", ["images", "pixels"])
def test_precision_recall_curve_matches_loop(rng, average):
    cases = [random_case(rng, s) for s in [(6, 7), (5, 9), (8, 4)]]
    maps, gts = [c[0] for c in cases], [c[1] for c in cases]
    # an all-blurred mask and a constant map as edge cases inside the data set
    maps.append(np.full((4, 4), 3.0, np.float32))
    gts.append(np.ones((4, 4), bool))
    p, r, t = P.precision_recall_curve(maps, gts, n_thresholds=21, average=average)
    rp, rr = ref_pr(maps, gts, t, average)
    np.testing.assert_allclose(p, rp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r, rr, rtol=0, atol=1e-12)
    assert np.all(np.diff(r) <= 1e-12)  # recall never increases with the threshold
    assert r[0] == 1.0


def test_accumulator_equals_function_and_counts_sum(rng):
    cases = [random_case(rng, (5, 6)) for _ in range(3)]
    acc = P.PrecisionRecallAccumulator(n_thresholds=11)
    for d, g in cases:
        acc.update(d, g)
    assert len(acc) == 3
    for average in ("images", "pixels"):
        p1, r1, _ = acc.curve(average)
        p2, r2, _ = P.precision_recall_curve([c[0] for c in cases], [c[1] for c in cases], 11, average)
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(r1, r2)
    total = sum(P.precision_recall_counts(d, g, 11).tp for d, g in cases)
    np.testing.assert_array_equal(acc.counts.tp, total)
    with pytest.raises(ValueError, match="average"):
        acc.curve("bogus")
    with pytest.raises(ValueError, match="no images"):
        P.PrecisionRecallAccumulator().curve()


def test_f_measure():
    p = np.array([1.0, 0.5, 0.0, 0.8])
    r = np.array([0.0, 0.5, 0.0, 0.6])
    expect = [0.0, 0.5, 0.0, 1.3 * 0.8 * 0.6 / (0.3 * 0.8 + 0.6)]
    np.testing.assert_allclose(M.f_measure(p, r), expect)
    assert P.max_f_measure(p, r) == pytest.approx(max(expect))
    assert P.max_f_measure(p, r, beta2=1.0) == pytest.approx(max(2 * 0.8 * 0.6 / 1.4, 0.5))
    with pytest.raises(ValueError, match="same shape"):
        M.f_measure(p, r[:2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.f_measure(p + 1, r)


def test_normalized_mae(rng):
    d, g = random_case(rng)
    n = ref_norm(d)
    expect = np.mean([abs(n.flat[i] - float(g.flat[i])) for i in range(d.size)])
    assert M.normalized_mae(d, g) == pytest.approx(expect)
    assert M.normalized_mae(np.full((3, 3), 7.0), np.zeros((3, 3), bool)) == 0.0  # constant map -> 0
    assert M.normalized_mae(np.full((3, 3), 7.0), np.ones((3, 3), bool)) == 1.0
    assert M.normalized_mae(g.astype(np.float32) * 5 + 1, g) == 0.0


def test_evaluate_blur_detection(rng):
    cases = [random_case(rng, (6, 5)) for _ in range(3)]
    maps, gts = [c[0] for c in cases], [c[1] for c in cases]
    r = P.evaluate_blur_detection(maps, gts, n_thresholds=16)
    assert r["n_images"] == 3
    assert r["accuracy"] == pytest.approx(np.mean([M.segmentation_accuracy(d, g) for d, g in cases]))
    assert r["best_accuracy"] == pytest.approx(np.mean([P.best_threshold_accuracy(d, g, 16) for d, g in cases]))
    assert r["mae"] == pytest.approx(np.mean([M.normalized_mae(d, g) for d, g in cases]))
    p, rc, _ = P.precision_recall_curve(maps, gts, 16)
    assert r["max_f"] == pytest.approx(P.max_f_measure(p, rc))
    with pytest.raises(ValueError, match="gt masks"):
        P.evaluate_blur_detection(maps, gts[:2])


# ----------------------------------------------------------------- sigma units

TABLE = np.array([[0.3, 0.5], [0.5, 0.75], [0.65, 1.0], [0.775, 1.25], [0.875, 1.5]])


def test_disk_radius_to_sigma_interpolates():
    radius = np.array([[0.5, 0.625, 1.0], [1.4, 0.1, 9.0]])

    def ref(x):  # piecewise-linear by hand, clamped at the ends
        if x <= TABLE[0, 1]:
            return TABLE[0, 0]
        if x >= TABLE[-1, 1]:
            return TABLE[-1, 0]
        i = np.searchsorted(TABLE[:, 1], x) - 1
        (s0, r0), (s1, r1) = TABLE[i], TABLE[i + 1]
        return s0 + (s1 - s0) * (x - r0) / (r1 - r0)

    got = M.disk_radius_to_sigma(radius, TABLE)
    assert got.dtype == np.float32 and got.shape == radius.shape
    np.testing.assert_allclose(got, np.vectorize(ref)(radius), rtol=1e-6)
    # table points are reproduced exactly (identity on the table)
    np.testing.assert_allclose(M.disk_radius_to_sigma(TABLE[:, 1], TABLE), TABLE[:, 0], rtol=1e-6)


def test_disk_radius_to_sigma_bad_table():
    with pytest.raises(ValueError, match="shape"):
        M.disk_radius_to_sigma(np.ones(3), TABLE[:, 0])
    with pytest.raises(ValueError, match="increase"):
        M.disk_radius_to_sigma(np.ones(3), TABLE[::-1])
    with pytest.raises(ValueError, match="NaN"):
        M.disk_radius_to_sigma(np.array([np.nan]), TABLE)


def test_load_conversion_table(tmp_path):
    import scipy.io

    scipy.io.savemat(tmp_path / "convertion.mat", {"convertion": TABLE})
    np.testing.assert_array_equal(M.load_conversion_table(tmp_path / "convertion.mat"), TABLE)
    scipy.io.savemat(tmp_path / "other.mat", {"x": TABLE})
    with pytest.raises(ValueError, match="convertion"):
        M.load_conversion_table(tmp_path / "other.mat")


def test_sigma_mae(rng):
    p = rng.uniform(0.5, 2, (5, 6)).astype(np.float32)
    g = rng.uniform(0.5, 2, (5, 6)).astype(np.float32)
    expect = sum(abs(float(a) - float(b)) for a, b in zip(p.ravel(), g.ravel())) / p.size
    assert M.sigma_mae(p, g) == pytest.approx(expect)
    assert M.sigma_mae(g, g) == 0.0
    mask = np.zeros((5, 6), bool)
    mask[1, 2] = True
    assert M.sigma_mae(p, g, mask) == pytest.approx(abs(float(p[1, 2]) - float(g[1, 2])))
    with pytest.raises(ValueError, match="same shape"):
        M.sigma_mae(p, g[:, :5])
    with pytest.raises(ValueError, match="no pixel"):
        M.sigma_mae(p, g, np.zeros((5, 6), bool))


def test_rescale_map():
    d = np.array([[1.0, 2.0], [3.0, 5.0]])
    np.testing.assert_allclose(M.rescale_map(d), 0.5 + 1.5 * (d - 1) / 4, rtol=1e-6)
    np.testing.assert_array_equal(M.rescale_map(np.full((2, 2), 4.0)), np.full((2, 2), 0.5, np.float32))


# ----------------------------------------------------------------------------- literature protocol


def _brute_binary(d, g, t, beta2):
    lo, hi = d.min(), d.max()
    tp = fp = fn = 0
    err = 0.0
    for x, y in zip(d.ravel(), g.ravel()):
        n = 0.0 if hi <= lo else (x - lo) / (hi - lo)
        err += abs(n - float(y))
        pred = n > t
        tp += pred and y
        fp += pred and not y
        fn += (not pred) and y
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = (1 + beta2) * p * r / (beta2 * p + r) if beta2 * p + r > 0 else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    return {"precision": p, "recall": r, "f": f, "iou": iou, "mae": err / d.size}


def test_binary_scores_against_brute_force():
    from dhde.evaluation.metrics import binary_scores

    rng = np.random.default_rng(3)
    for _ in range(5):
        d = rng.random((9, 11)) * 3
        g = rng.random((9, 11)) < 0.4
        for t, b in ((0.5, 0.3), (0.2, 1.0)):
            got = binary_scores(d, g, t, b)
            ref = _brute_binary(d, g, t, b)
            for k in ref:
                assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    perfect = binary_scores(np.eye(6), np.eye(6, dtype=bool))
    assert perfect == {"precision": 1.0, "recall": 1.0, "f": pytest.approx(1.0), "iou": 1.0, "mae": 0.0}
    with pytest.raises(ValueError, match="threshold"):
        binary_scores(np.eye(3), np.eye(3, dtype=bool), 1.5)
    with pytest.raises(ValueError, match="shape"):
        binary_scores(np.eye(3), np.eye(4, dtype=bool))


def test_sigma_threshold_counts_against_loops():
    from dhde.evaluation.pr_curves import sigma_threshold_counts
    from dhde.labels import SIGMAS

    rng = np.random.default_rng(4)
    d = rng.uniform(0.4, 2.2, (7, 13))
    d[0, 0] = SIGMAS[3]  # exactly at a threshold: not above it
    g = rng.random((7, 13)) < 0.5
    c = sigma_threshold_counts(d, g, SIGMAS)
    for i, t in enumerate(SIGMAS):
        assert c.tp[i] == sum(1 for x, y in zip(d.ravel(), g.ravel()) if x > t and y)
        assert c.fp[i] == sum(1 for x, y in zip(d.ravel(), g.ravel()) if x > t and not y)
    assert c.positives == g.sum() and c.negatives == (~g).sum()
    np.testing.assert_array_equal(c.thresholds, SIGMAS.astype(np.float64))
    with pytest.raises(ValueError, match="taus"):
        sigma_threshold_counts(d, g, [])
