"""Paper Table 1 from a training sweep.

    python experiments/train.py -m +experiment=table1
    python experiments/report.py multirun/train/<date>/<time>        # -> table1.md, table1.png

Reads every metrics.json under the folder (one per run) and writes a Markdown table (ours beside
the paper's numbers) and a grouped bar chart into it (or into --out).
"""

import argparse
import sys

from dhde.training.report import write_report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("multirun_dir", help="folder holding the runs' metrics.json files")
    ap.add_argument("--out", default=None, help="output folder (default: multirun_dir)")
    a = ap.parse_args(argv)
    try:
        md, png, text = write_report(a.multirun_dir, a.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {md} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
