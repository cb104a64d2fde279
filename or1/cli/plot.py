"""``or1-plot``: PNG figures of one or several runs (overlaid, for ablations).

    or1-plot outputs/2026-01-01/12-00-00                 # -> that run's plots/
    or1-plot runs/adaptive runs/constant -o ablation/     # two runs on the same axes

Figures: reward, validation accuracy (stages shaded), entropy and its coefficient with the
target line, response length and truncation, step time by phase. See ``or1.commands.plot``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from or1.cli.common import guarded


@guarded
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="or1-plot", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN_DIR", help="or1 run folders (with metrics.jsonl)"
    )
    parser.add_argument(
        "-o", "--out", type=Path, default=None, help="output folder (default: RUN_DIR/plots/)"
    )
    args = parser.parse_args(argv)

    from or1.commands.plot import plot_runs

    for path in plot_runs(args.runs, args.out):
        print(path)


if __name__ == "__main__":
    main()
