"""Answer grading shared by the reward function and the evaluator.

``grade_math`` wraps math-verify directly (no process pool, so it needs no
``__main__`` guard). math-verify's own timeouts use ``signal.alarm``, which only
works in the main thread; elsewhere (Ray actors' worker threads, asyncio
executors) they are switched off and the bounded input length guards the cost.

``grade_choice`` grades multiple-choice answers (ARC-c, GPQA, MMLU-Pro) by the
letter the response commits to.
"""

from __future__ import annotations

import re
import threading

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

__all__ = ["extract_boxed", "extract_choice", "grade_math", "grade_choice", "grade", "is_choice_task"]

#: Only the tail of a response is parsed: the final answer lives there, and parsing
#: megabytes of text with sympy is the way a grader hangs.
MAX_GRADED_CHARS = 4000

_GOLD_CONFIG = (LatexExtractionConfig(),)
_PRED_CONFIG = (ExprExtractionConfig(), LatexExtractionConfig())
_CHOICE_SOURCES = ("arc", "gpqa", "mmlu")


def _timeout_seconds() -> int | None:
    return 5 if threading.current_thread() is threading.main_thread() else None


def extract_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` (balanced braces), or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def grade_math(response: str, ground_truth: str) -> bool:
    """True iff the final answer of ``response`` equals ``ground_truth`` (math-verify)."""
    timeout = _timeout_seconds()
    gold_text = ground_truth if "\\boxed" in ground_truth else "\\boxed{" + ground_truth + "}"
    gold = parse(gold_text, _GOLD_CONFIG, parsing_timeout=timeout)
    pred = parse(response[-MAX_GRADED_CHARS:], _PRED_CONFIG, parsing_timeout=timeout)
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=timeout))


_CHOICE_PATTERNS = (
    re.compile(r"ANSWER\s*:\s*\$?\(?([A-J])\)?\b", re.IGNORECASE),
    re.compile(r"\\boxed\{\s*\\?(?:text\{)?\(?([A-J])\)?\}?\s*\}"),
    re.compile(r"answer is\s*:?\s*\(?([A-J])\)?\b", re.IGNORECASE),
)


def extract_choice(response: str) -> str | None:
    """The option letter a response commits to: its last ``ANSWER: X``, ``\\boxed{X}``
    or ``answer is X``; a response that is just a letter counts too."""
    tail = response[-MAX_GRADED_CHARS:]
    stripped = tail.strip().strip("().").strip()
    if len(stripped) == 1 and stripped.upper() in "ABCDEFGHIJ":
        return stripped.upper()
    best: tuple[int, str] | None = None
    for pattern in _CHOICE_PATTERNS:
        for m in pattern.finditer(tail):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.group(1).upper())
    return None if best is None else best[1]


def grade_choice(response: str, ground_truth: str) -> bool:
    """True iff the response's chosen letter equals the ground-truth letter."""
    chosen = extract_choice(response)
    return chosen is not None and chosen == ground_truth.strip().upper()


def is_choice_task(data_source: str, ground_truth: str) -> bool:
    """Multiple-choice data sets are graded by letter, everything else by math-verify."""
    source = data_source.lower()
    return any(s in source for s in _CHOICE_SOURCES) and len(ground_truth.strip()) == 1


def grade(response: str, ground_truth: str, data_source: str = "") -> bool:
    """Dispatch to :func:`grade_choice` or :func:`grade_math` by data source."""
    if is_choice_task(data_source, ground_truth):
        return grade_choice(response, ground_truth)
    return grade_math(response, ground_truth)
