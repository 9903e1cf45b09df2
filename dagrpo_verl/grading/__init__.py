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
"""Answer grading shared by the reward function and the evaluator.

The rules, pure and in-process: :func:`grade` dispatches to :func:`grade_choice`
(ARC-c, GPQA, MMLU-Pro: the option label the response commits to) or :func:`grade_math`
(math-verify, after the normalisations below). Called directly they are *not* time-bounded
off the main thread; the reward function and the evaluator call them through
:mod:`dagrpo_verl.grading.pool`, which runs them in grading processes with a hard bound.

What is graded (:func:`answer_region`): the content of the last closed ``<answer>...</answer>``
when the response has one, otherwise the response; with ``require_boxed`` only its last
``\\boxed{...}``; at most the last :data:`MAX_GRADED_CHARS` characters.

Normalisations before math-verify (both sides, the classes where math-verify 0.9 disagrees
with the field's graders; see ``benchmarks/grader_agreement.py``):

* percent signs and words are dropped (``28\\%``, ``28 %``, ``28 percent``, ``28 pct`` all read 28;
  Qwen2.5-Math's and DeepScaleR's graders do the same);
* a plain-text mixed number ``4 4/9`` reads 40/9 (math-verify 0.9 reads 4, and ``4 0/0`` as 0; here
  a zero denominator is undefined);
* a single number in square brackets ``[45]`` reads 45 (an answer format, not a list).
"""

from __future__ import annotations

import math
import numbers
import re
import threading
from decimal import Decimal
from typing import Any

import numpy as np
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

__all__ = [
    "MAX_GRADED_CHARS",
    "GroundTruthError",
    "answer_region",
    "extract_boxed",
    "extract_choice",
    "grade",
    "grade_choice",
    "grade_math",
    "ground_truth_text",
    "is_choice_task",
    "normalize_math_text",
]

#: Only the tail of a response is parsed: the final answer lives there, and parsing
#: megabytes of text with sympy is the way a grader hangs.
MAX_GRADED_CHARS = 4000

#: math-verify's own (signal-based) timeout for direct calls in a main thread. The grading
#: processes of :mod:`dagrpo_verl.grading.pool` set it to None: they run their own deadline timer,
#: which math-verify's ``signal.alarm`` calls would cancel.
SIGNAL_TIMEOUT_S: int | None = 5

_GOLD_CONFIG = (LatexExtractionConfig(),)
_PRED_CONFIG = (ExprExtractionConfig(), LatexExtractionConfig())
_CHOICE_SOURCES = ("arc", "gpqa", "mmlu")


class GroundTruthError(ValueError):
    """A ground truth that cannot be graded (a data problem): the message names it and the fix."""


def ground_truth_text(value: Any, where: str = "reward_model.ground_truth") -> str:
    """A ground truth as the text the grader reads, keeping numbers exact.

    Strings are kept as written. Integers (Python or numpy) become their digits; an integral float
    becomes the integer it holds exactly (``1e20`` -> ``"100000000000000000000"``, never ``"1e+20"``,
    which math-verify reads as e + 20); other floats their shortest round-trip decimal written out
    positionally (``1e-05`` -> ``"0.00001"``).

    Raises:
        GroundTruthError: a bool, NaN, infinity, None or any other type, naming ``where``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise GroundTruthError(f"{where} is {value!r}; store the final answer as text or a number.")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise GroundTruthError(f"{where} is {number!r}; a ground truth must be a finite answer.")
        if number.is_integer():
            return str(int(number))
        return format(Decimal(str(value)), "f")  # str: the shortest repr of the value's own precision
    raise GroundTruthError(
        f"{where} has type {type(value).__name__} ({str(value)[:60]!r}); store one final answer as a string."
    )


def _timeout_seconds() -> int | None:
    return SIGNAL_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


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


_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"


def answer_region(response: str, require_boxed: bool = False) -> str:
    """The part of ``response`` that holds its final answer (see the module docstring).

    Linear in ``len(response)``; "" when ``require_boxed`` and there is no ``\\boxed{}``.
    """
    close = response.rfind(_ANSWER_CLOSE)
    if close >= 0:
        open_ = response.rfind(_ANSWER_OPEN, 0, close)
        if open_ >= 0:
            response = response[open_ + len(_ANSWER_OPEN) : close]
    if require_boxed:
        boxed = extract_boxed(response)
        if boxed is None:
            return ""
        response = "\\boxed{" + boxed + "}"
    return response[-MAX_GRADED_CHARS:]


# No leading \s*: a run of spaces before no percent would be rescanned from every position.
_PERCENT = re.compile(r"\\(?:text|mbox|mathrm)\{ *(?:\\?%|percent(?:age)?|pct) *\}|\\?%|\b(?:percent(?:age)?|pct)\b")
# "4 4/9": an integer, a space, a fraction of integers; not after a digit, letter, sign of an
# exponent/subscript or a decimal point, not followed by more digits or an exponent.
_MIXED_NUMBER = re.compile(r"(?<![\w.,^_/\\}])(\d+)(?: +|\\ |~)(\d+)/(\d+)(?![\d/^]|\.\d)")
# "[45]", "[-3]", "[5.0]", "[1/2]": one number in square brackets; not "\\[" (display maths), not
# after a letter ("\\sqrt[3]", "x[2]": an index).
_BRACKETED_NUMBER = re.compile(r"(?<![\\A-Za-z])\[\s*(-?\d+(?:\.\d+)?(?:/\d+)?)\s*\]")


def _improper_fraction(match: re.Match) -> str:
    """``a b/c`` -> ``(a*c+b)/c`` (exact, no brackets: math-verify reads "40/9." but not "(4+4/9)."); a zero
    denominator -> the word ``undefined`` (math-verify 0.9 finds ``0/0`` equal to 0 under some hash seeds)."""
    whole, numerator, denominator = match.groups()
    if len(whole) + len(denominator) > 18:  # leave absurd digit strings alone (and int() cheap)
        return match.group(0)
    if int(denominator) == 0:
        return "undefined"
    return f"{int(whole) * int(denominator) + int(numerator)}/{int(denominator)}"


def normalize_math_text(text: str) -> str:
    """``text`` with the normalisations of the module docstring applied (percent, mixed
    numbers, bracketed numbers). Linear time; idempotent."""
    text = _PERCENT.sub("", text)
    text = _MIXED_NUMBER.sub(_improper_fraction, text)
    return _BRACKETED_NUMBER.sub(r"\1", text)


def grade_math(response: str, ground_truth: str, require_boxed: bool = False) -> bool:
    """True iff the final answer of ``response`` equals ``ground_truth`` (math-verify).

    By default math-verify also takes an answer without ``\\boxed{}`` (the last expression of
    the text). With ``require_boxed`` only the response's last ``\\boxed{...}`` counts, so a
    number that merely occurs in the text is not an answer.
    """
    region = answer_region(response, require_boxed)
    if not region.strip():
        return False
    timeout = _timeout_seconds()
    truth = normalize_math_text(ground_truth)
    gold_text = truth if "\\boxed" in truth else "\\boxed{" + truth + "}"
    gold = parse(gold_text, _GOLD_CONFIG, parsing_timeout=timeout)
    pred = parse(normalize_math_text(region), _PRED_CONFIG, parsing_timeout=timeout)
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=timeout))


#: Option labels: letters for ARC-c, GPQA (A-D) and MMLU-Pro (A-J); a few ARC-c questions number
#: their options 1-4 instead, so digit labels are graded the same way.
LETTER_LABELS = "ABCDEFGHIJ"
DIGIT_LABELS = "123456789"

# A label must stand alone: "answer is C" counts, "answer is Carbon" does not. Labels are matched
# case-sensitively ("the answer is a bit tricky" commits to nothing).
_END = r"(?![A-Za-z0-9])"
# What may wrap a label: spaces, markdown bold/italics, "$C$", quotes, brackets, \text{C}, \boxed{C}.
# Each repetition takes at least one character and the alternatives start differently, so
# matching stays linear (no two adjacent quantifiers over the same characters).
_DECOR = r"(?:[\s*_$\"'\[({]|\\(?:text|textbf|mathrm|mathbf|boxed)\{)*"
# Explicit commitments: "ANSWER: C" (the GPQA prompt's required last line) and \boxed{C}.
_EXPLICIT = (
    r"(?i:answer){decor}:{decor}([{labels}])" + _END,
    r"\\boxed\{{decor}([{labels}])" + _END,
)
# Weaker phrasings, used only when the response has no explicit commitment.
_ADVERB = r"(?:\s+(?:definitely|clearly|certainly|probably|likely|most\s+likely|for\s+sure))?"
_PHRASED = (
    r"(?i:answer\s+is|answer\s+would\s+be|correct\s+(?:option|choice)\s+is)"
    + _ADVERB
    + r"{decor}(?::{decor})?([{labels}])"
    + _END,
    r"(?i:\bi\s+(?:think|believe|guess)\s+(?:it'?s|it\s+is))" + _ADVERB + r"{decor}([{labels}])" + _END,
)
#: A short reply (at most this many characters) that starts with a label and a period or closing
#: bracket commits to it ("D. it can't be A or B"), when it has no other commitment.
SHORT_REPLY_CHARS = 200
_LEADING = (r"\s*\(?([{labels}])[.)](?:\s|$)",)
_BARE = r"(?:[\W_]|\\(?:text|textbf|mathrm|mathbf|boxed)\{)*([{labels}])[\W_]*"


def _compile(patterns: tuple[str, ...], labels: str, flags: int = 0) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p.replace("{decor}", _DECOR).replace("{labels}", labels), flags) for p in patterns)


_CHOICE_TIERS = {
    labels: (_compile(_EXPLICIT, labels), _compile(_PHRASED, labels)) for labels in (LETTER_LABELS, DIGIT_LABELS)
}
_CHOICE_LEADING = {labels: _compile(_LEADING, labels)[0] for labels in (LETTER_LABELS, DIGIT_LABELS)}
_CHOICE_BARE = {labels: _compile((_BARE,), labels + labels.lower())[0] for labels in (LETTER_LABELS, DIGIT_LABELS)}


def extract_choice(response: str, labels: str = LETTER_LABELS) -> str | None:
    """The option label a response commits to, or None.

    A response that is just a label, however wrapped (``"C"``, ``(C)``, ``C.``, ``"C"``, ``'C'``,
    ``[C]``, ``\\text{C}``, ``\\boxed{C}``, ``**C**``), counts. Otherwise the last explicit commitment
    (``ANSWER: C`` with the same wrappers, ``\\boxed{C}``, ``\\boxed{\\text{(C)}}``) wins; failing that,
    the last ``answer is C`` / ``the answer is definitely C`` / ``I think it's C``; failing that, a
    short reply (:data:`SHORT_REPLY_CHARS`) starting ``C.`` or ``(C)``. A label merely mentioned
    ("Because B is valid") is no commitment. ``labels`` is :data:`LETTER_LABELS` or :data:`DIGIT_LABELS`.
    """
    if labels not in _CHOICE_TIERS:
        raise ValueError(f"labels must be LETTER_LABELS or DIGIT_LABELS, got {labels!r}.")
    tail = answer_region(response)
    bare = _CHOICE_BARE[labels].fullmatch(tail)
    if bare is not None:
        return bare.group(1).upper()
    for tier in _CHOICE_TIERS[labels]:
        best: tuple[int, str] | None = None
        for pattern in tier:
            for m in pattern.finditer(tail):
                if best is None or m.start() > best[0]:
                    best = (m.start(), m.group(1))
        if best is not None:
            return best[1]
    if len(tail) <= SHORT_REPLY_CHARS:
        leading = _CHOICE_LEADING[labels].match(tail)
        if leading is not None:
            return leading.group(1)
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
