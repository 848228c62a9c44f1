"""Table 1 of the paper from a sweep's ``metrics.json`` files: a Markdown table and a bar chart.

Each training run (``dhde.training.loop.train_and_evaluate``) writes a ``metrics.json`` with
its feature set, encoding and test accuracies (fractions in [0, 1]). These pure functions turn
a list of them into rows in the paper's order, a Markdown table with the paper's number beside
ours (both in percent), and a grouped bar chart (matplotlib Agg, no display).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

from dhde.io import atomic
from dhde.features.encoding import parse_feature_set
from dhde.labels import NUM_LABELS

#: Random guessing among the 11 blur levels, percent (paper: 9.09).
RANDOM_GUESS = 100.0 / NUM_LABELS

#: The paper's Table 1 (tolerance accuracy, percent), by (feature set, encoding), in its order.
#: A string is a result the paper reports in words; None: the paper has no such row.
PAPER_TABLE1: dict[tuple[str, str], float | str | None] = {
    ("D", "separate"): 38.15,
    ("G", "separate"): 68.36,
    ("S", "separate"): 61.76,
    ("H", "separate"): 71.49,
    ("C", "separate"): 89.38,
    ("B", "separate"): 94.16,
    ("D+S+C", "separate"): 93.25,
    ("G+S+C", "separate"): 91.10,
    ("B", "single_scale"): 91.00,
    ("B", "shared"): "does not converge",
    ("B", "separate_no_constants"): None,
}

#: Table columns: (header, metrics.json key); accuracies are shown in percent.
ACCURACY_COLUMNS = (
    ("tolerance acc. (%)", "tolerance_accuracy"),
    ("exact acc. (%)", "exact_accuracy"),
    ("tol. large (%)", "tolerance_accuracy_large"),
    ("tol. small (%)", "tolerance_accuracy_small"),
    ("exact large (%)", "exact_accuracy_large"),
    ("exact small (%)", "exact_accuracy_small"),
)


def canonical_key(feature_set: str, encoding: str) -> tuple[tuple[str, ...], str]:
    """(components, encoding): "B" and "D+G+S+C" name the same model."""
    return parse_feature_set(feature_set), encoding


_PAPER_BY_CANON = {canonical_key(*k): v for k, v in PAPER_TABLE1.items()}
_ORDER = {canonical_key(*k): i for i, k in enumerate(PAPER_TABLE1)}


def paper_value(feature_set: str, encoding: str) -> float | str | None:
    """The paper's Table-1 number (percent) for a model, a phrase, or None if it has no row."""
    try:
        return _PAPER_BY_CANON.get(canonical_key(feature_set, encoding))
    except ValueError:
        return None


def collect_metrics(root: str | Path) -> list[dict]:
    """Reads every ``metrics.json`` under ``root`` (recursively), sorted by path.

    Each dict gets a ``run`` entry: its folder relative to ``root``. Files that are not JSON
    objects with ``feature_set``, ``encoding`` and ``tolerance_accuracy`` are skipped with a
    warning on stdout (a run that is still going or crashed).

    Raises:
      ValueError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"not a directory: {root}")
    out = []
    for p in sorted(root.rglob("metrics.json")):
        try:
            m = json.loads(p.read_text())
            if not isinstance(m, dict) or not {"feature_set", "encoding", "tolerance_accuracy"} <= m.keys():
                raise ValueError("missing feature_set / encoding / tolerance_accuracy")
        except (OSError, ValueError) as e:
            print(f"skipping {p}: {e}")
            continue
        m = dict(m)
        m["run"] = str(p.parent.relative_to(root)) or "."
        m.update(plateau(p.parent / "history.jsonl"))
        out.append(m)
    return out


#: A run counts as converged when the best validation accuracy of its second half is at most
#: this much (a fraction) above the best of its first half.
PLATEAU_TOLERANCE = 0.01


def plateau(history_path: str | Path) -> dict:
    """How flat a run's validation curve is at its end, from its ``history.jsonl``.

    Returns ``{"val_final", "val_gain_second_half", "converged"}``: the last validation tolerance
    accuracy (fraction), the best accuracy of the second half of the evaluations minus the best
    of the first half (fraction; > 0 means it was still improving), and whether that gain is at
    most :data:`PLATEAU_TOLERANCE`. All three are None when the file is missing or has fewer than
    four evaluations.
    """
    from dhde.training.metrics import read_history

    none = {"val_final": None, "val_gain_second_half": None, "converged": None}
    try:
        v = read_history(history_path)["val_tolerance_accuracy"]
    except OSError:
        return none
    if v.size < 4:
        return none
    half = v.size // 2
    gain = float(v[half:].max() - v[:half].max())
    return {"val_final": float(v[-1]), "val_gain_second_half": gain, "converged": gain <= PLATEAU_TOLERANCE}


def table_rows(results: Sequence[Mapping]) -> list[dict]:
    """One row per run, in the paper's row order (unknown models last), accuracies in percent.

    Row keys: ``feature_set``, ``encoding``, ``run``, each metrics key of
    :data:`ACCURACY_COLUMNS` (percent, NaN when absent), ``paper`` (see :func:`paper_value`),
    ``converged`` (from :func:`plateau`, None when unknown).
    """
    rows = []
    for m in results:
        fs, enc = str(m["feature_set"]), str(m["encoding"])
        row = {"feature_set": fs, "encoding": enc, "run": str(m.get("run", ""))}
        for _, key in ACCURACY_COLUMNS:
            v = m.get(key)
            row[key] = 100.0 * float(v) if v is not None else math.nan
        row["paper"] = paper_value(fs, enc)
        row["converged"] = m.get("converged")
        rows.append(row)

    def order(r):
        try:
            k = _ORDER.get(canonical_key(r["feature_set"], r["encoding"]), len(_ORDER))
        except ValueError:
            k = len(_ORDER)
        return k, r["feature_set"], r["encoding"], r["run"]

    return sorted(rows, key=order)


def _pct(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return "-" if math.isnan(v) else f"{v:.2f}"


def markdown_table(rows: Sequence[Mapping]) -> str:
    """The rows of :func:`table_rows` as a Markdown table (ours vs the paper, percent)."""
    head = ["feature set", "encoding", *(h for h, _ in ACCURACY_COLUMNS), "paper (%)", "ours - paper", "run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ours, paper = r["tolerance_accuracy"], r["paper"]
        diff = f"{ours - paper:+.2f}" if isinstance(paper, float) and not math.isnan(ours) else "-"
        cells = [r["feature_set"], r["encoding"], *(_pct(r[k]) for _, k in ACCURACY_COLUMNS),
                 _pct(paper), diff, r["run"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    lines.append(f"Tolerance accuracy: |sigma_pred - sigma_true| <= 0.15. Random guess: {RANDOM_GUESS:.2f} %. "
                 "Paper: Park et al., CVPR 2017, Table 1.")
    return "\n".join(lines) + "\n"


def summary_rows(rows: Sequence[Mapping]) -> list[dict]:
    """Runs of one model (feature set + encoding, e.g. several seeds) pooled into one row each.

    Args:
      rows: :func:`table_rows` output (accuracies in percent), optionally with ``converged``
        (see :func:`plateau`).

    Returns:
      Rows in the paper's order with ``feature_set``, ``encoding``, ``runs`` (count),
      ``tolerance_accuracy`` (mean, percent), ``min`` and ``max`` (percent), ``paper`` and
      ``converged`` (True when every run's curve was flat, False when any was still rising,
      None when unknown).
    """
    groups: dict = {}
    for r in rows:
        try:
            key = canonical_key(r["feature_set"], r["encoding"])
        except ValueError:
            key = ((r["feature_set"],), r["encoding"])
        groups.setdefault(key, []).append(r)
    out = []
    for group in groups.values():
        acc = [g["tolerance_accuracy"] for g in group if not math.isnan(g["tolerance_accuracy"])]
        flags = [g.get("converged") for g in group]
        converged = None if any(f is None for f in flags) else all(flags)
        out.append({
            "feature_set": group[0]["feature_set"], "encoding": group[0]["encoding"], "runs": len(group),
            "tolerance_accuracy": sum(acc) / len(acc) if acc else math.nan,
            "min": min(acc) if acc else math.nan, "max": max(acc) if acc else math.nan,
            "paper": group[0]["paper"], "converged": converged,
        })
    return out  # groups keep the order of ``rows`` (the paper's)


#: The paper's ordering of Table 1's separate-encoding rows, worst to best.
PAPER_ORDER = ("D", "S", "G", "H", "C", "B")


def ordering_check(summary: Sequence[Mapping], order: Sequence[str] = PAPER_ORDER) -> tuple[bool | None, list[str]]:
    """Whether the mean accuracies of the separate-encoding rows follow ``order`` (increasing).

    Returns (holds, lines): holds is None when a row of ``order`` is missing; lines name every
    adjacent pair that breaks the order, with both means in percent.
    """
    means = {}
    for r in summary:
        if r["encoding"] != "separate":
            continue
        for name in order:
            if canonical_key(name, "separate") == canonical_key(r["feature_set"], "separate"):
                means[name] = r["tolerance_accuracy"]
    if any(name not in means for name in order):
        missing = [n for n in order if n not in means]
        return None, [f"rows missing for the ordering check: {', '.join(missing)}"]
    lines = [f"{a} ({means[a]:.2f} %) is not below {b} ({means[b]:.2f} %)"
             for a, b in zip(order, order[1:]) if not means[a] < means[b]]
    return not lines, lines


def summary_table(summary: Sequence[Mapping]) -> str:
    """:func:`summary_rows` as Markdown, followed by the paper-ordering verdict."""
    head = ["feature set", "encoding", "runs", "tolerance acc. (%), mean", "min - max (%)", "paper (%)",
            "ours - paper", "converged"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        ours, paper = r["tolerance_accuracy"], r["paper"]
        diff = f"{ours - paper:+.2f}" if isinstance(paper, float) and not math.isnan(ours) else "-"
        spread = f"{_pct(r['min'])} - {_pct(r['max'])}" if r["runs"] > 1 else "-"
        conv = {True: "yes", False: "no (still rising)", None: "-"}[r["converged"]]
        cells = [r["feature_set"], r["encoding"], r["runs"], _pct(ours), spread, _pct(paper), diff, conv]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    holds, why = ordering_check(summary)
    lines.append("")
    verdict = {True: "holds", False: "does not hold", None: "cannot be checked"}[holds]
    lines.append(f"Paper ordering {' < '.join(PAPER_ORDER)}: {verdict}." + (" " + "; ".join(why) + "." if why else ""))
    lines.append(f"Converged: the best validation accuracy of a run's second half is at most "
                 f"{100 * PLATEAU_TOLERANCE:.0f} point above that of its first half.")
    return "\n".join(lines) + "\n"


def bar_chart(rows: Sequence[Mapping], path: str | Path, title: str = "Table 1: ours vs paper"):
    """Grouped bars (ours, paper) of the tolerance accuracy per row; writes a PNG at ``path``.

    Rows without a numeric paper value get only our bar; the random-guess level is a dashed line.
    Returns the written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [f"{r['feature_set']}\n{r['encoding']}" for r in rows]
    ours = [r["tolerance_accuracy"] for r in rows]
    paper = [r["paper"] if isinstance(r["paper"], float) else math.nan for r in rows]
    x = list(range(len(rows)))
    fig = Figure(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    w = 0.4
    lo = [r["tolerance_accuracy"] - r["min"] if "min" in r else 0.0 for r in rows]
    hi = [r["max"] - r["tolerance_accuracy"] if "max" in r else 0.0 for r in rows]
    ax.bar([i - w / 2 for i in x], ours, w, label="ours", yerr=[lo, hi] if any(lo + hi) else None, capsize=3)
    ax.bar([i + w / 2 for i in x], paper, w, label="paper")
    ax.axhline(RANDOM_GUESS, color="k", ls="--", lw=1, label=f"random guess ({RANDOM_GUESS:.2f} %)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("accuracy within 0.15 sigma (%)")
    ax.set_ylim(0, 100)
    for i, r in enumerate(rows):  # the paper's verbal results, e.g. "does not converge"
        if isinstance(r["paper"], str):
            ax.text(i + w / 2, 2, r["paper"], rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    fig.tight_layout()
    return atomic.savefig(path, fig, dpi=100)


def write_report(root: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path, str]:
    """Gathers ``root``'s metrics and writes ``table1.md`` and ``table1.png`` into ``out_dir``
    (default ``root``). Returns (markdown path, PNG path, the Markdown text).

    Raises:
      ValueError: no readable ``metrics.json`` under ``root``.
    """
    results = collect_metrics(root)
    if not results:
        raise ValueError(f"no metrics.json under {root}")
    rows = table_rows(results)
    summary = summary_rows(rows)
    out = Path(out_dir) if out_dir is not None else Path(root)
    out.mkdir(parents=True, exist_ok=True)
    text = summary_table(summary) + "\n## Every run\n\n" + markdown_table(rows)
    md = out / "table1.md"
    atomic.write_text(md, text)
    return md, bar_chart(summary, out / "table1.png"), text
