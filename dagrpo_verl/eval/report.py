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
"""Scores and the paper's table (Table 1 layout) as Markdown and CSV.

A benchmark's score is avg@k: the mean over its problems of the fraction of the
problem's first k samples that are correct (k=1: pass@1), in percent. The table
has the six in-distribution math benchmarks and their average, then the three
out-of-distribution benchmarks and their average; a benchmark that was not
evaluated shows as "-" and the averages cover the evaluated ones (the Markdown
says so under the table).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from dagrpo_verl.eval.runner import SampleRecord
from dagrpo_verl.eval.suite import BENCHMARKS, ID, OOD

__all__ = ["ID_AVG", "OOD_AVG", "BenchmarkScore", "score", "table_frame", "to_markdown"]

ID_AVG = "ID Avg."
OOD_AVG = "OOD Avg."


@dataclass(frozen=True)
class BenchmarkScore:
    """Score of one benchmark in one run."""

    benchmark: str
    problems: int
    k: int
    accuracy: float  # percent
    mean_tokens: float
    truncated_frac: float


def score(records: list[SampleRecord], samples: dict[str, int]) -> dict[str, BenchmarkScore]:
    """avg@k per benchmark key from graded samples (only samples with index < k count).

    A problem with fewer than k samples is scored on the ones it has.
    """
    per_problem: dict[str, dict[str, list[SampleRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.sample < samples.get(r.benchmark, 1):
            per_problem[r.benchmark][r.uid].append(r)
    out = {}
    for key, problems in per_problem.items():
        accs = [sum(r.correct for r in rs) / len(rs) for rs in problems.values()]
        flat = [r for rs in problems.values() for r in rs]
        out[key] = BenchmarkScore(
            benchmark=key,
            problems=len(problems),
            k=max(len(rs) for rs in problems.values()),
            accuracy=100.0 * sum(accs) / len(accs),
            mean_tokens=sum(r.num_tokens for r in flat) / len(flat),
            truncated_frac=sum(r.truncated for r in flat) / len(flat),
        )
    return out


def _average(scores: dict[str, BenchmarkScore], group: str) -> float | None:
    values = [scores[b.key].accuracy for b in BENCHMARKS if b.group == group and b.key in scores]
    return sum(values) / len(values) if values else None


def table_frame(runs: dict[str, dict[str, BenchmarkScore]]) -> pd.DataFrame:
    """One row per run (index: run name), columns in the paper's order (percent, NaN when missing)."""
    columns = [b.title for b in BENCHMARKS if b.group == ID] + [ID_AVG]
    columns += [b.title for b in BENCHMARKS if b.group == OOD] + [OOD_AVG]
    rows = {}
    for name, scores in runs.items():
        row = {b.title: scores[b.key].accuracy if b.key in scores else float("nan") for b in BENCHMARKS}
        row[ID_AVG] = _average(scores, ID)
        row[OOD_AVG] = _average(scores, OOD)
        rows[name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns).astype(float)
    frame.index.name = "model"
    return frame


def _metric(k: int) -> str:
    return "pass@1" if k == 1 else f"avg@{k}"


def to_markdown(frame: pd.DataFrame, runs: dict[str, dict[str, BenchmarkScore]]) -> str:
    """The table as Markdown, with the k and problem count of every column and a note on partial averages."""
    header = ["Model", *frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":-:"] * len(frame.columns)) + "|"]
    for name, row in frame.iterrows():
        cells = ["-" if pd.isna(v) else f"{v:.1f}" for v in row]
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    notes = []
    for name, scores in runs.items():
        parts = [
            f"{b.title} {_metric(scores[b.key].k)} over {scores[b.key].problems}" for b in BENCHMARKS if b.key in scores
        ]
        notes.append(f"- {name}: " + ", ".join(parts))
        for group, label, total in ((ID, ID_AVG, 6), (OOD, OOD_AVG, 3)):
            n = sum(1 for b in BENCHMARKS if b.group == group and b.key in scores)
            if 0 < n < total:
                notes.append(f"  - {label} covers {n} of the {total} {group} benchmarks.")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
