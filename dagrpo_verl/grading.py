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

__all__ = ["extract_boxed", "extract_choice", "grade", "grade_choice", "grade_math", "is_choice_task"]

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


def grade_math(response: str, ground_truth: str, require_boxed: bool = False) -> bool:
    """True iff the final answer of ``response`` equals ``ground_truth`` (math-verify).

    By default math-verify also takes an answer without ``\\boxed{}`` (the last expression of
    the text). With ``require_boxed`` only the response's last ``\\boxed{...}`` counts, so a
    number that merely occurs in the text is not an answer.
    """
    if require_boxed:
        boxed = extract_boxed(response)
        if boxed is None:
            return False
        response = "\\boxed{" + boxed + "}"
    timeout = _timeout_seconds()
    gold_text = ground_truth if "\\boxed" in ground_truth else "\\boxed{" + ground_truth + "}"
    gold = parse(gold_text, _GOLD_CONFIG, parsing_timeout=timeout)
    pred = parse(response[-MAX_GRADED_CHARS:], _PRED_CONFIG, parsing_timeout=timeout)
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=timeout))


#: Option labels: letters for ARC-c, GPQA (A-D) and MMLU-Pro (A-J); a few ARC-c questions number
#: their options 1-4 instead, so digit labels are graded the same way.
LETTER_LABELS = "ABCDEFGHIJ"
DIGIT_LABELS = "123456789"

# A label must stand alone: "answer is C" counts, "answer is Carbon" does not. Labels are matched
# case-sensitively ("the answer is a bit tricky" commits to nothing).
_END = r"\s*\)?(?![A-Za-z0-9])"
_DECOR = r"[\s*_$]*"  # markdown bold/italics and "$LETTER"-style dollars around a label
# Explicit commitments: "ANSWER: C" (the GPQA prompt's required last line) and \boxed{C}.
_EXPLICIT = (
    r"(?i:answer){decor}:{decor}\(?\s*([{labels}])" + _END,
    r"\\boxed\{\s*(?:\\text(?:bf)?\{)?\s*\(?\s*([{labels}])" + _END,
)
# Weaker phrasings, used only when the response has no explicit commitment.
_PHRASED = (
    r"(?i:answer\s+is|answer\s+would\s+be|correct\s+(?:option|choice)\s+is){decor}:?{decor}\(?\s*([{labels}])" + _END,
)


def _compile(patterns: tuple[str, ...], labels: str) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p.replace("{decor}", _DECOR).replace("{labels}", labels)) for p in patterns)


_CHOICE_TIERS = {
    labels: (_compile(_EXPLICIT, labels), _compile(_PHRASED, labels)) for labels in (LETTER_LABELS, DIGIT_LABELS)
}


def extract_choice(response: str, labels: str = LETTER_LABELS) -> str | None:
    """The option label a response commits to, or None.

    A response that is just a label (``"C"``, ``"(C)"``, ``"C."``) counts. Otherwise the last
    explicit commitment (``ANSWER: C``, ``\\boxed{C}``, ``\\boxed{\\text{(C)}}``) wins; failing
    that, the last ``answer is C``. ``labels`` is :data:`LETTER_LABELS` or :data:`DIGIT_LABELS`.
    """
    if labels not in _CHOICE_TIERS:
        raise ValueError(f"labels must be LETTER_LABELS or DIGIT_LABELS, got {labels!r}.")
    tail = response[-MAX_GRADED_CHARS:]
    stripped = tail.strip().strip("().*").strip()
    if len(stripped) == 1 and stripped.upper() in labels:
        return stripped.upper()
    for tier in _CHOICE_TIERS[labels]:
        best: tuple[int, str] | None = None
        for pattern in tier:
            for m in pattern.finditer(tail):
                if best is None or m.start() > best[0]:
                    best = (m.start(), m.group(1))
        if best is not None:
            return best[1]
    return None


def grade_choice(response: str, ground_truth: str) -> bool:
    """True iff the response's chosen option label equals the ground-truth label
    (a letter A-J, or a digit 1-9 for the ARC-c questions numbered that way)."""
    truth = ground_truth.strip().upper()
    labels = DIGIT_LABELS if truth.isdigit() else LETTER_LABELS
    chosen = extract_choice(response, labels)
    return chosen is not None and chosen == truth


def is_choice_task(data_source: str, ground_truth: str) -> bool:
    """Multiple-choice data sets are graded by letter, everything else by math-verify."""
    source = data_source.lower()
    truth = ground_truth.strip().upper()
    return any(s in source for s in _CHOICE_SOURCES) and len(truth) == 1 and truth in LETTER_LABELS + DIGIT_LABELS


def grade(response: str, ground_truth: str, data_source: str = "", require_boxed: bool = False) -> bool:
    """Dispatch to :func:`grade_choice` or :func:`grade_math` (with ``require_boxed``) by data source."""
    if is_choice_task(data_source, ground_truth):
        return grade_choice(response, ground_truth)
    return grade_math(response, ground_truth, require_boxed=require_boxed)
