"""Grader: option-label extraction, math-verify grading, and a self-check on the real benchmark data."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagrpo_verl.grading import (
    DIGIT_LABELS,
    extract_boxed,
    extract_choice,
    grade,
    grade_choice,
    grade_math,
    is_choice_task,
)

BENCH_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"


@pytest.mark.parametrize(
    "response, expected",
    [
        ("C", "C"),
        ("(C)", "C"),
        ("C.", "C"),
        ("b", "B"),
        ("Let me think.\n\nANSWER: C", "C"),
        ("ANSWER: $C$", "C"),
        ("**Answer:** D", "D"),
        ("Final Answer: **J**", "J"),
        ("so \\boxed{C}", "C"),
        ("so \\boxed{\\text{(B)}}", "B"),
        ("so \\boxed{C) Planetary days will become shorter.}", "C"),
        ("The answer is (A).", "A"),
        ("The answer is Carbon dioxide.", None),
        ("the answer is a bit unclear", None),
        ("no commitment at all", None),
        ("ANSWER: B\nOption C is clearly wrong, the answer is C", "B"),  # explicit beats phrased
        ("\\boxed{A} ... on reflection ANSWER: D", "D"),  # the last explicit commitment wins
    ],
)
def test_extract_choice(response, expected):
    assert extract_choice(response) == expected


def test_extract_choice_digit_labels():
    assert extract_choice("ANSWER: 3", DIGIT_LABELS) == "3"
    assert extract_choice("ANSWER: 3") is None  # a digit is no letter label
    with pytest.raises(ValueError, match="labels"):
        extract_choice("A", "ABCD")


def test_grade_choice_and_dispatch():
    assert grade_choice("ANSWER: C", "C") and not grade_choice("ANSWER: B", "C")
    assert grade_choice("ANSWER: 2", "2") and not grade_choice("ANSWER: 3", "2")
    assert grade("ANSWER: J", "J", "mmlu_pro")
    assert is_choice_task("arc_c", "3") and is_choice_task("gpqa", " a ")
    assert not is_choice_task("math", "C")  # a math answer that happens to be a letter goes to math-verify
    assert not is_choice_task("arc_c", "AB")


@pytest.mark.parametrize(
    "response, truth, correct",
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$", "0.5", True),
        ("\\boxed{142}", "142.0", True),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("\\boxed{143}", "142.0", False),
        ("no final answer here", "7", False),
    ],
)
def test_grade_math(response, truth, correct):
    assert grade_math(response, truth) is correct


def test_extract_boxed_nested():
    assert extract_boxed("a \\boxed{1} then \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert extract_boxed("\\boxed{unclosed") is None


@pytest.mark.skipif(not BENCH_DIR.is_dir(), reason="../shared/data/benchmarks not present")
def test_selfcheck_sample_of_every_benchmark():
    """Reference answers of a deterministic sample (every 25th problem of every data_source) grade
    correct; shuffled wrong answers grade wrong. The full sweep is benchmarks/grader_sweep.py."""
    from dagrpo_verl.eval.data import load_problems
    from dagrpo_verl.eval.selfcheck import grader_selfcheck

    problems = load_problems(sorted(BENCH_DIR.glob("*.parquet")))
    sources = {p.data_source for p in problems}
    sample = []
    for source in sorted(sources):
        of_source = [p for p in problems if p.data_source == source]
        sample.extend(of_source[::25])
    results = grader_selfcheck(sample, progress=False)
    assert {p.benchmark.key for p in sample} == set(results)
    assert len(sources) >= 8
    for key, r in results.items():
        assert r.reference_accuracy >= 0.995, (key, r.reference_failures)
        assert r.rejection_rate >= 0.99, (key, r.wrong_accepted)
