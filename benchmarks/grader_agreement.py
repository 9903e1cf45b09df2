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
"""Agreement of our grader with the labelled cases of peers' public grader test suites.

Grades every case of ``benchmarks/data/peer_grading_cases.jsonl`` (made by
``harvest_peer_grading_cases.py``: Math-Verify, lighteval, AReaL, TRL, NeMo-RL, DeepScaleR)
through the bounded grading path the reward function uses, and prints the agreement per kind
(math, multiple choice) and every disagreement with its provenance.

    python -m benchmarks.grader_agreement [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagrpo_verl.grading.pool import GradeStatus, GradingConfig, GradingPool

CASES_FILE = Path(__file__).resolve().parent / "data" / "peer_grading_cases.jsonl"

#: Data source under which each kind of case is graded (selects letter or math-verify grading).
DATA_SOURCE = {"math": "math", "choice": "gpqa"}


def load_cases(path: Path = CASES_FILE) -> list[dict]:
    """The cases, one dict per line (see the harvester's docstring for the fields)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class Agreement:
    """Agreement of one kind of case."""

    kind: str
    cases: int = 0
    agreed: int = 0
    timeouts: int = 0
    disagreements: list[dict] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.agreed / self.cases if self.cases else float("nan")


def measure(cases: list[dict], pool: GradingPool) -> dict[str, Agreement]:
    """Grade every case (in parallel on ``pool``) and compare with its label, per kind."""
    results = pool.grade_many((c["response"], c["ground_truth"], DATA_SOURCE[c["kind"]]) for c in cases)
    by_kind: dict[str, Agreement] = {}
    for case, result in zip(cases, results, strict=True):
        agreement = by_kind.setdefault(case["kind"], Agreement(case["kind"]))
        agreement.cases += 1
        agreement.timeouts += result.status is GradeStatus.TIMEOUT
        if result.correct == case["expected"]:
            agreement.agreed += 1
        else:
            agreement.disagreements.append({**case, "graded": result.correct, "status": result.status.value})
    return by_kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES_FILE)
    parser.add_argument("--workers", type=int, default=2, help="grading processes")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers and disagreements here")
    args = parser.parse_args(argv)
    cases = load_cases(args.cases)
    pool = GradingPool(GradingConfig(workers=args.workers))
    start = time.perf_counter()
    try:
        by_kind = measure(cases, pool)
    finally:
        pool.close()
    elapsed = time.perf_counter() - start
    for agreement in by_kind.values():
        for d in agreement.disagreements:
            print(
                f"DISAGREE [{d['kind']}] expected {d['expected']} got {d['graded']} ({d['status']}) "
                f"gold {d['ground_truth'][:60]!r} response ...{d['response'][-80:]!r} <- {d['repo']}:{d['path']} "
                f"{d['test']}"
            )
    summary = {
        kind: {"cases": a.cases, "agreed": a.agreed, "agreement_pct": round(100 * a.rate, 1), "timeouts": a.timeouts}
        for kind, a in sorted(by_kind.items())
    }
    print(json.dumps({**summary, "seconds": round(elapsed, 1)}))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"summary": summary, "disagreements": [d for a in by_kind.values() for d in a.disagreements]},
                indent=1,
                ensure_ascii=False,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
