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
"""Grader sweep over every evaluation parquet: reference answers must grade correct, wrong ones not.

Run from the repository root::

    python benchmarks/grader_sweep.py [--data-dir ../shared/data/benchmarks] [--out grader_sweep.csv]

Prints one line per benchmark (problems, rows, reference accuracy, wrong-answer rejection rate)
and lists every failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from dagrpo_verl.eval.data import load_problems
from dagrpo_verl.eval.selfcheck import grader_selfcheck


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/benchmarks")
    )
    parser.add_argument("--out", default=None, help="optional CSV with the per-benchmark numbers")
    args = parser.parse_args(argv)
    files = sorted(Path(args.data_dir).glob("*.parquet"))
    if not files:
        print(f"no parquet files in {args.data_dir}; pass --data-dir", file=sys.stderr)
        return 2
    problems = load_problems(files)
    start = time.perf_counter()
    results = grader_selfcheck(problems)
    elapsed = time.perf_counter() - start
    rows = []
    for key, r in results.items():
        rows.append(
            {
                "benchmark": key,
                "problems": r.problems,
                "rows": r.rows,
                "reference_correct": r.reference_correct,
                "reference_accuracy": round(100 * r.reference_accuracy, 2),
                "wrong_checked": r.wrong_checked,
                "wrong_rejected": r.wrong_rejected,
                "wrong_rejection_rate": round(100 * r.rejection_rate, 2),
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    total_ref = sum(r.reference_correct for r in results.values()) / sum(r.problems for r in results.values())
    total_rej = sum(r.wrong_rejected for r in results.values()) / sum(r.wrong_checked for r in results.values())
    print(
        f"\nall: reference accuracy {100 * total_ref:.2f}%, wrong-answer rejection {100 * total_rej:.2f}% "
        f"({len(problems)} problems, {elapsed:.0f} s)"
    )
    by_uid = {p.uid: p for p in problems}
    for key, r in results.items():
        for uid, truth in r.reference_failures:
            print(f"REFERENCE FAILED [{key}] {truth!r}: {by_uid[uid].question[:80]!r}")
        for uid, truth, wrong in r.wrong_accepted:
            print(f"WRONG ACCEPTED [{key}] truth {truth!r} accepted {wrong!r}")
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
