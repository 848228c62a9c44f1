"""Benchmark of sparse-to-full defocus propagation (dhde.propagation.solver) on a natural image.

Guide: scikit-image's ``coffee`` resized to each size and Gaussian-blurred (sigma 1); mask:
Canny edges (~8 % of the pixels); values: a synthetic piecewise-smooth defocus map (sigma in
0.5..2.0) plus noise, taken at the edge pixels. For every preconditioner it reports the first
call (compilation included), the steady-state time of ``propagate`` and, measured
separately, of its parts: matting stencil, multigrid hierarchy, CG solve (best of
``--repeats``, interleaved; the machine may be shared, so read the numbers as rough). Also the
CG iterations (``solver="pcg"``), the true relative
residual, and the relative error against a float64 direct solve (``scipy.sparse.linalg.spsolve``
on the assembled matrix; above ``--direct-max-pixels`` against multigrid PCG at tol 1e-7).

    python benchmarks/bench_propagation.py                      # 480x640 and 960x1280
    python benchmarks/bench_propagation.py --sizes 240x320 --preconditioners multigrid
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from skimage import color, data, feature, transform

from dhde.propagation import matting
from dhde.propagation import solver as prop
from dhde.filters.gaussian import gaussian_blur
from dhde.propagation import multigrid
from dhde.propagation.solver import GAMMA, propagate

build_multigrid = jax.jit(multigrid.build_multigrid, static_argnames=("max_coarse",))

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test-side references
from reference.matting_laplacian import assemble_matting_laplacian  # noqa: E402


def make_problem(h: int, w: int, seed: int = 0):
    img = transform.resize(data.coffee(), (h, w), anti_aliasing=True).astype(np.float32)
    guide = np.clip(np.asarray(gaussian_blur(img, 1.0)), 0.0, 1.0)
    gray = color.rgb2gray(img)
    mask = feature.canny(gray, sigma=2.0, low_threshold=0.05, high_threshold=0.1)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    truth = 0.5 + 1.2 * (0.5 + 0.5 * np.sin(3 * xx + 2 * yy)) * (gray > 0.4) + 0.3 * yy
    rng = np.random.default_rng(seed)
    sparse = np.where(mask, truth + 0.05 * rng.standard_normal((h, w)), 0.0).astype(np.float32)
    return sparse, mask, guide


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def rel_err(x, ref) -> float:
    return float(np.linalg.norm(np.asarray(x, np.float64) - ref) / np.linalg.norm(ref))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_size(h, w, preconditioners, repeats, direct_max_pixels, tol):
    sparse, mask, guide = make_problem(h, w)
    lam = jnp.float32(matting.regularizer(matting.EPS, "code"))
    guide_j = jnp.asarray(guide)
    mass, b = prop.system_terms(jnp.asarray(sparse), jnp.asarray(mask), jnp.float32(GAMMA))
    coeffs = matting.stencil_coefficients(guide_j, lam)
    mg = build_multigrid(coeffs, mass)
    x0 = jnp.zeros((h, w), jnp.float32)
    rows, solutions = [], {}
    for pc in preconditioners:
        for solver in ("pcg", "jax_cg") if pc == "multigrid" else ("pcg",):
            def run(pc=pc, solver=solver):
                return propagate(sparse, mask, guide, tol=tol, preconditioner=pc, solver=solver)

            def solve(pc=pc, solver=solver):  # CG only, on precomputed stencil and hierarchy
                return prop.solve(
                    coeffs, mass, b, x0, jnp.float32(tol), jnp.int32(prop.DEFAULT_MAXITER),
                    mg if pc == "multigrid" else None, preconditioner=pc, solver=solver,
                )[0]

            t = time.perf_counter()
            res = run()
            first = time.perf_counter() - t
            jax.block_until_ready(solve())
            times = {"coeffs": [], "mg": [], "solve": [], "total": []}
            for _ in range(repeats):  # interleaved, so that load changes hit every column alike
                times["coeffs"].append(best_time(lambda: matting.stencil_coefficients(guide_j, lam), 1))
                if pc == "multigrid":
                    times["mg"].append(best_time(lambda: build_multigrid(coeffs, mass), 1))
                times["solve"].append(best_time(solve, 1))
                times["total"].append(best_time(lambda: run().defocus, 1))
            t_min = {k: min(v) if v else 0.0 for k, v in times.items()}
            solutions[(pc, solver)] = np.asarray(res.defocus, np.float64)
            rows.append(dict(size=f"{h}x{w}", pc=pc, solver=solver, first=first, total=t_min["total"],
                             coeffs=t_min["coeffs"], mg=t_min["mg"], solve=t_min["solve"],
                             iters=res.iterations, residual=res.residual))
    rss_jax = peak_rss_mib()
    if h * w <= direct_max_pixels:
        t = time.perf_counter()
        lap = assemble_matting_laplacian(guide)
        a = (lap + sp.diags(GAMMA * mask.ravel().astype(np.float64))).tocsc()
        rhs = GAMMA * (mask * sparse).ravel().astype(np.float64)
        ref = spl.spsolve(a, rhs, permc_spec="MMD_AT_PLUS_A").reshape(h, w)
        ref_name, ref_time = "float64 spsolve", time.perf_counter() - t
    else:
        t = time.perf_counter()
        ref = np.asarray(propagate(sparse, mask, guide, tol=1e-7, solver="pcg").defocus, np.float64)
        ref_name, ref_time = "MG-PCG tol 1e-7", time.perf_counter() - t
    for row in rows:
        row["err"] = rel_err(solutions[(row["pc"], row["solver"])], ref)
    info = dict(size=f"{h}x{w}", mask=float(mask.mean()), rss=rss_jax, ref=ref_name, ref_time=ref_time)
    return rows, info


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="480x640,960x1280", help="comma-separated HxW")
    ap.add_argument("--preconditioners", default="none,jacobi,multigrid")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--direct-max-pixels", type=int, default=400_000)
    args = ap.parse_args()
    print(f"jax {jax.__version__}, device {jax.devices()[0].device_kind}")
    all_rows, infos = [], []
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.lower().split("x"))
        rows, info = bench_size(h, w, args.preconditioners.split(","), args.repeats,
                                args.direct_max_pixels, args.tol)
        all_rows += rows
        infos.append(info)
    print()
    print("| size | preconditioner | solver | first call s | propagate s | stencil s | multigrid s "
          "| CG solve s | iterations | true residual | rel. error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in all_rows:
        print(f"| {r['size']} | {r['pc']} | {r['solver']} | {r['first']:.1f} | {r['total']:.3f} | "
              f"{r['coeffs']:.3f} | {r['mg']:.3f} | {r['solve']:.3f} | "
              f"{r['iters'] if r['iters'] >= 0 else 'n/a'} | {r['residual']:.1e} | {r['err']:.1e} |")
    print()
    print("| size | mask density | reference | reference s | peak RSS MiB (before reference) |")
    print("|---|---|---|---|---|")
    for i in infos:
        print(f"| {i['size']} | {i['mask']:.1%} | {i['ref']} | {i['ref_time']:.1f} | {i['rss']:.0f} |")


if __name__ == "__main__":
    main()
