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
"""Grader self-check: every reference answer must grade as correct, a wrong one as incorrect.

For each problem the reference answer is fed back as a response (math: a short
sentence ending in ``\\boxed{answer}``; multiple choice: the bare option label and a
sentence ending in ``ANSWER: X``, both must pass). The wrong
answer is another problem's reference answer from the same benchmark (a seeded
shuffle, skipping answers with the same text); for multiple choice it is the
next option label. ``benchmarks/grader_sweep.py`` runs this over every file;
the tests run it on a deterministic sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tqdm import tqdm

from dagrpo_verl.eval.data import Problem
from dagrpo_verl.grading import DIGIT_LABELS, LETTER_LABELS, is_choice_task
from dagrpo_verl.grading.pool import GradingPool, get_grading_pool

__all__ = ["SelfCheck", "grader_selfcheck", "reference_responses", "wrong_answers"]


def reference_responses(problem: Problem, answer: str) -> list[str]:
    """Responses that commit to ``answer`` in the formats the problem's grader reads."""
    if is_choice_task(problem.data_source, problem.ground_truth):
        return [answer, f"Comparing the options, the best one is {answer}.\n\nANSWER: {answer}"]
    return [f"Working through the problem step by step gives the result.\n\nThe final answer is $\\boxed{{{answer}}}$."]


def _other_label(truth: str) -> str:
    labels = DIGIT_LABELS[:4] if truth.isdigit() else LETTER_LABELS[:4]
    i = labels.find(truth)
    return labels[(i + 1) % len(labels)] if i >= 0 else labels[0]


def wrong_answers(problems: list[Problem], seed: int = 0) -> dict[str, str]:
    """A wrong answer per problem uid: a shuffled reference answer of the same benchmark
    (never one with the same text), or the next option label for multiple choice."""
    rng = random.Random(seed)
    by_benchmark: dict[str, list[Problem]] = {}
    for p in problems:
        by_benchmark.setdefault(p.benchmark.key, []).append(p)
    wrong: dict[str, str] = {}
    for group in by_benchmark.values():
        answers = [p.ground_truth for p in group]
        for p in group:
            if is_choice_task(p.data_source, p.ground_truth):
                wrong[p.uid] = _other_label(p.ground_truth.strip().upper())
                continue
            candidates = [a for a in answers if a.strip() != p.ground_truth.strip()]
            if candidates:
                wrong[p.uid] = rng.choice(candidates)
    return wrong


@dataclass
class SelfCheck:
    """Self-check counts of one benchmark (per distinct problem)."""

    benchmark: str
    problems: int = 0
    rows: int = 0
    reference_correct: int = 0
    wrong_checked: int = 0
    wrong_rejected: int = 0
    reference_failures: list[tuple[str, str]] = field(default_factory=list)  # (uid, ground truth)
    wrong_accepted: list[tuple[str, str, str]] = field(default_factory=list)  # (uid, ground truth, wrong answer)

    @property
    def reference_accuracy(self) -> float:
        """Fraction of reference answers graded correct."""
        return self.reference_correct / self.problems if self.problems else float("nan")

    @property
    def rejection_rate(self) -> float:
        """Fraction of wrong answers graded incorrect."""
        return self.wrong_rejected / self.wrong_checked if self.wrong_checked else float("nan")


def grader_selfcheck(
    problems: list[Problem], seed: int = 0, progress: bool = True, pool: GradingPool | None = None
) -> dict[str, SelfCheck]:
    """Grade every problem's reference answer and a wrong answer; results per benchmark key.

    Grading goes through the evaluator's bounded path (``pool``, default: the shared default pool),
    in parallel; a timeout counts as not correct.
    """
    pool = pool or get_grading_pool()
    wrong = wrong_answers(problems, seed)
    jobs = []  # (problem, is_reference, future)
    for p in problems:
        for answer, is_reference in ((p.ground_truth, True), (wrong.get(p.uid), False)):
            if answer is not None:
                for response in reference_responses(p, answer):
                    jobs.append((p, is_reference, pool.submit(response, p.ground_truth, p.data_source)))
    correct: dict[tuple[str, bool], list[bool]] = {}
    for p, is_reference, future in tqdm(jobs, desc="grader self-check", disable=not progress):
        correct.setdefault((p.uid, is_reference), []).append(future.result().correct)
    results: dict[str, SelfCheck] = {}
    for p in problems:
        r = results.setdefault(p.benchmark.key, SelfCheck(p.benchmark.key))
        r.problems += 1
        r.rows += p.repeats
        if all(correct[(p.uid, True)]):
            r.reference_correct += 1
        else:
            r.reference_failures.append((p.uid, p.ground_truth))
        if p.uid in wrong:
            r.wrong_checked += 1
            if any(correct[(p.uid, False)]):
                r.wrong_accepted.append((p.uid, p.ground_truth, wrong[p.uid]))
            else:
                r.wrong_rejected += 1
    return results
