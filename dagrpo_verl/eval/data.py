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
"""Reading evaluation parquets into problems.

The public evaluation parquets (and :mod:`dagrpo_verl.data.benchmarks`) hold one
row per prompt with ``data_source``, ``prompt`` (chat messages) and
``reward_model.ground_truth``. AIME/AMC rows are repeated (32 copies each) so
that a one-sample-per-row evaluator computes avg@32; here repeated rows are
grouped into one :class:`Problem` and the evaluator draws k samples per problem
instead, so a repeated row is never generated twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dagrpo_verl.eval.suite import BENCHMARKS, Benchmark, benchmark_for

__all__ = ["DEFAULT_FILES", "Problem", "load_problems", "problems_from_frame"]

#: The files of ``../shared/data/benchmarks/`` (and of ``python -m dagrpo_verl.data.benchmarks``).
DEFAULT_FILES = ("valid.all.parquet", "valid.arc_c.parquet", "valid.gpqa.parquet", "valid.mmlu_pro.parquet")

_REQUIRED = ("data_source", "prompt", "reward_model")


@dataclass(frozen=True)
class Problem:
    """One distinct prompt of a benchmark.

    Args:
        uid: stable id (hash of data_source, prompt and ground truth); keys the resume cache.
        benchmark: the paper benchmark this problem belongs to.
        data_source: the row's ``data_source``.
        messages: the chat prompt, a tuple of ``{"role", "content"}`` dicts.
        ground_truth: the reference answer.
        repeats: how many identical rows the parquet held.
    """

    uid: str
    benchmark: Benchmark
    data_source: str
    messages: tuple[dict, ...]
    ground_truth: str
    repeats: int = 1

    @property
    def question(self) -> str:
        """The last user message (the question text)."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


def _messages(value, where: str) -> tuple[dict, ...]:
    if isinstance(value, str):
        return ({"role": "user", "content": value},)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: 'prompt' must be a non-empty list of chat messages, got {type(value).__name__}.")
    out = []
    for m in value:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"{where}: every 'prompt' message needs 'role' and 'content' keys, got {m!r}.")
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    if not any(m["role"] == "user" for m in out):
        raise ValueError(f"{where}: 'prompt' has no message with role 'user'.")
    return tuple(out)


def problems_from_frame(frame: pd.DataFrame, origin: str = "<frame>") -> list[Problem]:
    """Group the rows of one evaluation data frame into problems (rows in first-seen order).

    Raises a ``ValueError`` naming the file, row and field when a row does not follow the layout.
    """
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{origin}: missing column(s) {missing}; an evaluation parquet needs {list(_REQUIRED)} "
            "(prepare one with `python -m dagrpo_verl.data.benchmarks`)."
        )
    problems: dict[str, Problem] = {}
    counts: dict[str, int] = {}
    for i, row in enumerate(frame[list(_REQUIRED)].itertuples(index=False)):
        where = f"{origin} row {i}"
        reward_model = row.reward_model
        if not isinstance(reward_model, dict) or reward_model.get("ground_truth") is None:
            raise ValueError(f"{where}: 'reward_model' must be a dict with a 'ground_truth' key, got {reward_model!r}.")
        ground_truth = str(reward_model["ground_truth"])
        data_source = str(row.data_source)
        benchmark = benchmark_for(data_source)
        if benchmark is None:
            raise ValueError(
                f"{where}: unknown data_source {data_source!r}; the evaluator knows "
                f"{sorted(s for b in BENCHMARKS for s in b.data_sources)} (rename the data_source column)."
            )
        messages = _messages(row.prompt, where)
        key = json.dumps([data_source, messages, ground_truth], sort_keys=True, ensure_ascii=False)
        uid = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
        counts[uid] = counts.get(uid, 0) + 1
        if uid not in problems:
            problems[uid] = Problem(uid, benchmark, data_source, messages, ground_truth)
    return [
        Problem(p.uid, p.benchmark, p.data_source, p.messages, p.ground_truth, counts[p.uid]) for p in problems.values()
    ]


def load_problems(paths: Iterable[str | Path]) -> list[Problem]:
    """Read evaluation parquets and return their problems, repeated rows grouped."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation data {path} does not exist; pass existing parquets with --data.")
        for p in problems_from_frame(pd.read_parquet(path), origin=str(path)):
            if p.uid not in seen:
                seen.add(p.uid)
                problems.append(p)
    return problems
