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
"""A synthetic hard task with expert anchors, in verl's RL layout, for the CPU demo and CI.

Each prompt asks for the sum of a few small numbers, answered as ``\\boxed{s}``. A
randomly initialised model never produces a correct ``\\boxed{}`` answer, so every
group is all-wrong: GRPO's advantages are all zero and it cannot learn. The data set
ships an expert solution per prompt in ``extra_info["anchor"]`` (DaGRPO's off-policy
anchor and the judge's reference), so DaGRPO has signal from the first step.

    python -m dagrpo_verl.data.synthetic --out data/synthetic --train 256 --val 32
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pandas as pd

from dagrpo_verl.fields import ANCHOR_TEXT, QUESTION

__all__ = ["make_rows", "write_synthetic_task"]

DATA_SOURCE = "dagrpo/synthetic_sum"
INSTRUCTION = "Put the final answer in \\boxed{}."


#: Anchor styles: a worked solution ("3 + 4 = 7. \\boxed{7}") or the boxed answer alone.
ANCHOR_STYLES = ("worked", "answer")


def _problem(rng: random.Random, terms: int, max_operand: int, anchor_style: str) -> tuple[str, str, str]:
    numbers = [rng.randint(0, max_operand) for _ in range(terms)]
    total = sum(numbers)
    expression = " + ".join(map(str, numbers))
    question = f"{expression} = ? {INSTRUCTION}"
    boxed = f"\\boxed{{{total}}}"
    anchor = f"{expression} = {total}. {boxed}" if anchor_style == "worked" else boxed
    return question, str(total), anchor


def make_rows(
    n: int, *, seed: int, split: str, terms: int = 2, max_operand: int = 9, anchor_style: str = "worked"
) -> list[dict]:
    """``n`` rows in verl's layout with the anchor in ``extra_info``; deterministic in ``seed``."""
    if n < 1:
        raise ValueError(f"n must be >= 1 rows, got {n}.")
    if anchor_style not in ANCHOR_STYLES:
        raise ValueError(f"anchor_style must be one of {ANCHOR_STYLES}, got {anchor_style!r}.")
    rng = random.Random(f"{seed}-{split}")
    rows = []
    for index in range(n):
        question, answer, anchor = _problem(rng, terms, max_operand, anchor_style)
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": question}],
                "ability": "math",
                "reward_model": {"ground_truth": answer, "style": "rule"},
                "extra_info": {"index": index, "split": split, ANCHOR_TEXT: anchor, QUESTION: question},
            }
        )
    return rows


def write_synthetic_task(
    out_dir: str | Path,
    *,
    train: int = 256,
    val: int = 32,
    seed: int = 0,
    terms: int = 2,
    max_operand: int = 9,
    anchor_style: str = "worked",
) -> tuple[Path, Path]:
    """Write ``train.parquet`` and ``val.parquet`` under ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, n in (("train", train), ("val", val)):
        path = out / f"{split}.parquet"
        rows = make_rows(n, seed=seed, split=split, terms=terms, max_operand=max_operand, anchor_style=anchor_style)
        pd.DataFrame(rows).to_parquet(path)
        paths.append(path)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory for train.parquet and val.parquet")
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--terms", type=int, default=2, help="numbers per sum")
    parser.add_argument("--max-operand", type=int, default=9)
    parser.add_argument("--anchor-style", choices=ANCHOR_STYLES, default="worked")
    args = parser.parse_args(argv)
    train, val = write_synthetic_task(
        args.out,
        train=args.train,
        val=args.val,
        seed=args.seed,
        terms=args.terms,
        max_operand=args.max_operand,
        anchor_style=args.anchor_style,
    )
    print(f"wrote {train} and {val}")


if __name__ == "__main__":
    main()
