# Copyright 2026 The dagrpo-verl Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Combine evaluated runs into one table: ``python -m dagrpo_verl.eval.table DIR [DIR ...]``.

Reads each output directory's ``scores.csv`` (written by ``python -m dagrpo_verl.eval``)
and prints the paper's layout with one row per run; ``--csv``/``--md`` also write it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from dagrpo_verl.eval.cli import SCORES_FILE
from dagrpo_verl.eval.report import BenchmarkScore, table_frame, to_markdown

__all__ = ["main", "read_scores"]


def read_scores(out_dir: str | Path) -> tuple[str, dict[str, BenchmarkScore]]:
    """The run name and per-benchmark scores of an evaluation output directory."""
    path = Path(out_dir) / SCORES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `python -m dagrpo_verl.eval --out {out_dir}` first.")
    frame = pd.read_csv(path)
    if frame.empty:
        raise ValueError(f"{path} holds no scores; the run has no graded samples yet.")
    scores = {
        r.benchmark: BenchmarkScore(
            r.benchmark, int(r.problems), int(r.k), float(r.accuracy), float(r.mean_tokens), float(r.truncated_frac)
        )
        for r in frame.itertuples()
    }
    return str(frame.model.iloc[0]), scores


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally write) the combined table."""
    parser = argparse.ArgumentParser(prog="python -m dagrpo_verl.eval.table", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="evaluation output directories")
    parser.add_argument("--csv", default=None, help="write the table as CSV here")
    parser.add_argument("--md", default=None, help="write the table as Markdown here")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, BenchmarkScore]] = {}
    for out_dir in args.runs:
        name, scores = read_scores(out_dir)
        if name in runs:
            name = f"{name} ({out_dir})"
        runs[name] = scores
    frame = table_frame(runs)
    markdown = to_markdown(frame, runs)
    print(markdown)
    if args.csv:
        frame.round(2).to_csv(args.csv)
    if args.md:
        Path(args.md).write_text(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
