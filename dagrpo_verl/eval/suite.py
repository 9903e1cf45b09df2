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
"""The paper's nine evaluation benchmarks (DaGRPO, arXiv 2512.06337, Table 1).

Six in-distribution math sets (AIME24, AIME25, AMC: avg@32; MATH-500, Minerva,
OlympiadBench: pass@1) and three out-of-distribution multiple-choice sets
(ARC-c, GPQA-Diamond, MMLU-Pro: pass@1). A data row names its benchmark through
``data_source``; the public parquets spell them ``aime``, ``aime25``, ``amc``,
``math``, ``minerva``, ``olympiad_bench``, ``arc_c``, ``gpqa``, ``mmlu_pro``.

:data:`BENCHMARKS` is the one table of the nine sets: the evaluator reads it, and
:mod:`dagrpo_verl.data.benchmarks` (which prepares the parquets) takes each set's key,
``data_source`` spelling and row copies from it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BENCHMARKS", "ID", "OOD", "Benchmark", "benchmark_by_key", "benchmark_for", "parse_samples"]

ID = "in-distribution"
OOD = "out-of-distribution"


@dataclass(frozen=True)
class Benchmark:
    """One column of the paper's table.

    Args:
        key: short name used on the command line (``--benchmarks``, ``--samples``).
        title: column title in the table.
        group: :data:`ID` or :data:`OOD`.
        default_k: samples per problem; the score is their mean accuracy (avg@k, pass@1 for k=1).
        data_sources: lower-case ``data_source`` values that belong to this benchmark; the first is
            the spelling of the public parquets (:attr:`data_source`).
    """

    key: str
    title: str
    group: str
    default_k: int
    data_sources: tuple[str, ...]

    @property
    def data_source(self) -> str:
        """The ``data_source`` the public evaluation parquets (and ``python -m dagrpo_verl.data.benchmarks``) write."""
        return self.data_sources[0]


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("aime24", "AIME24", ID, 32, ("aime", "aime24", "aime2024", "aime_2024")),
    Benchmark("aime25", "AIME25", ID, 32, ("aime25", "aime2025", "aime_2025")),
    Benchmark("amc", "AMC", ID, 32, ("amc", "amc23", "amc2023")),
    Benchmark("math500", "MATH-500", ID, 1, ("math", "math500", "math_500", "math-500")),
    Benchmark("minerva", "Minerva", ID, 1, ("minerva", "minerva_math")),
    Benchmark("olympiad", "Olympiad", ID, 1, ("olympiad_bench", "olympiadbench", "olympiad")),
    Benchmark("arc_c", "ARC-c", OOD, 1, ("arc_c", "arc-c", "arc_challenge", "ai2_arc")),
    Benchmark("gpqa", "GPQA*", OOD, 1, ("gpqa", "gpqa_diamond", "gpqa-diamond")),
    Benchmark("mmlu_pro", "MMLU-Pro", OOD, 1, ("mmlu_pro", "mmlu-pro", "mmlupro")),
)

_BY_SOURCE = {source: b for b in BENCHMARKS for source in b.data_sources}
_BY_KEY = {b.key: b for b in BENCHMARKS}


def benchmark_by_key(key: str) -> Benchmark:
    """The benchmark of a key (``aime24``, ...); KeyError naming the known keys otherwise."""
    if key not in _BY_KEY:
        raise KeyError(f"unknown benchmark {key!r}; known: {sorted(_BY_KEY)}")
    return _BY_KEY[key]


def benchmark_for(data_source: str) -> Benchmark | None:
    """The benchmark a ``data_source`` value belongs to, or None for a data set outside the paper's nine."""
    return _BY_SOURCE.get(str(data_source).strip().lower())


def parse_samples(specs: list[str]) -> dict[str, int]:
    """Samples per problem for every benchmark, from ``KEY=K`` overrides on top of the paper's defaults.

    ``all=K`` sets every benchmark; later entries win (``all=1 aime24=4``).
    """
    samples = {b.key: b.default_k for b in BENCHMARKS}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip().lower()
        if not sep or (key != "all" and key not in _BY_KEY):
            raise ValueError(
                f"--samples {spec!r}: expected KEY=K with KEY 'all' or one of {sorted(_BY_KEY)} (e.g. aime24=32)."
            )
        try:
            k = int(value)
        except ValueError:
            k = 0
        if k < 1:
            raise ValueError(f"--samples {spec!r}: K must be an integer >= 1.")
        for b in BENCHMARKS if key == "all" else (_BY_KEY[key],):
            samples[b.key] = k
    return samples
