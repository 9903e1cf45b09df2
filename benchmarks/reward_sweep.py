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
"""Reward-function sweep over the real evaluation parquets.

For every row of ``<repo>/../shared/data/benchmarks/*.parquet`` (or ``--data-dir``) it calls
``dagrpo_verl.reward.compute_score`` (judge off) twice:

* with the row's own ground truth given back as ``The final answer is $\\boxed{<gt>}$``: must be 1;
* with a wrong answer (:func:`wrong_answers`): must be 0.

Prints one JSON line per data source and a total, and exits non-zero on any miss.

    .venv/bin/python -m benchmarks.reward_sweep [--data-dir DIR] [--limit-per-source N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dagrpo_verl.grading import is_choice_task
from dagrpo_verl.reward import compute_score

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
_NO_JUDGE = {"backend": "none"}


def load_rows(data_dir: Path) -> pd.DataFrame:
    """All rows of the parquets, with the ground truth as a ``ground_truth`` column."""
    files = sorted(data_dir.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet files in {data_dir}")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return frame.assign(ground_truth=frame["reward_model"].map(lambda r: str(r["ground_truth"])))


def spread_sample(frame: pd.DataFrame, per_source: int) -> pd.DataFrame:
    """``per_source`` evenly spaced rows of every data source (deterministic)."""
    parts = []
    for _, group in frame.groupby("data_source", sort=True):
        index = np.unique(np.linspace(0, len(group) - 1, num=min(per_source, len(group))).round().astype(int))
        parts.append(group.iloc[index])
    return pd.concat(parts)


def _bare(answer: str) -> str:
    """The answer without spaces and without a leading ``x =`` (``x=5`` is the answer 5)."""
    return re.sub(r"^[A-Za-z]=", "", answer.replace(" ", ""))


def wrong_answers(frame: pd.DataFrame) -> list[str]:
    """One wrong final answer per row: another option letter for multiple-choice rows, else the
    ground truth of the next row of the same data source that has a different answer (a real,
    well-formed answer of the same kind)."""
    wrong = {}
    for _, group in frame.groupby("data_source", sort=False):
        truths = group["ground_truth"].tolist()
        for position, (index, source, truth) in enumerate(zip(group.index, group["data_source"], truths, strict=True)):
            if is_choice_task(source, truth):
                wrong[index] = "B" if truth.strip().upper() == "A" else "A"
                continue
            others = truths[position + 1 :] + truths[:position]
            wrong[index] = next((o for o in others if _bare(o) != _bare(truth)), truth + "+1")
    return [wrong[index] for index in frame.index]


async def grade_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``right`` (reward of the ground truth) and ``wrong`` (reward of a wrong answer)."""
    right, wrong = [], []
    rows = zip(frame["data_source"], frame["ground_truth"], wrong_answers(frame), frame["extra_info"], strict=True)
    for source, truth, bad_answer, extra in rows:
        extra = dict(extra) if extra is not None else {}
        for answer, out in ((truth, right), (bad_answer, wrong)):
            result = await compute_score(
                source, f"The final answer is $\\boxed{{{answer}}}$", truth, extra, judge=_NO_JUDGE
            )
            out.append(result["score"])
    return frame.assign(right=right, wrong=wrong)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--limit-per-source", type=int, default=0, help="0 = every row")
    args = parser.parse_args()
    frame = load_rows(args.data_dir)
    if args.limit_per_source:
        frame = spread_sample(frame, args.limit_per_source)
    start = time.perf_counter()
    graded = asyncio.run(grade_rows(frame))
    misses = 0
    for source, group in graded.groupby("data_source", sort=True):
        bad = group[(group["right"] != 1.0) | (group["wrong"] != 0.0)]
        misses += len(bad)
        print(
            json.dumps(
                {
                    "data_source": source,
                    "rows": len(group),
                    "right_scored_1": float(group["right"].mean()),
                    "wrong_scored_0": float((group["wrong"] == 0.0).mean()),
                    "misses": bad["ground_truth"].head(5).tolist(),
                }
            )
        )
    print(json.dumps({"rows": len(graded), "misses": misses, "seconds": round(time.perf_counter() - start, 1)}))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
