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
"""Convert and validate DaGRPO training data: ``python -m dagrpo_verl.data.prepare``.

Input: the public OpenR1-Math-46k-8192 layout (LUFFY's), one row per prompt::

    data_source: str
    prompt:      list of {role, content}         (chat messages, last one from the user)
    target:      list of {role, content} | str   (the expert answer, e.g. DeepSeek-R1's)
    ability:     str                             (optional, default "math")
    reward_model: {ground_truth: str, style: str}
    extra_info:  {index, split, ...}             (optional)

Rows that already have the output layout (no ``target``, the expert answer in
``extra_info.anchor``) are validated the same way, so the command is idempotent.

Output: verl's RL layout with the expert answer moved into ``extra_info`` (key
:data:`dagrpo_verl.fields.ANCHOR_TEXT`), where it survives both verl trainers and
reaches the reward function (judge reference) and the anchor mixer::

    data_source, prompt, ability, reward_model {ground_truth, style},
    extra_info {index, split, anchor, question, <other keys of the input extra_info>}

Every row is checked; a bad row gives a :class:`RowError` naming the row (and, for JSONL,
the line), the field and the fix. Numeric ground truths are kept exact
(:func:`dagrpo_verl.grading.ground_truth_text`: ``1e20`` becomes ``100000000000000000000``,
never ``1e+20``; a JSON decimal keeps the digits it was written with); bool, NaN and infinite
ones are refused. ``extra_info.question`` must be a string (empty or absent: the last user
message), and the flags the trainer sets itself (``extra_info.is_anchor``,
``extra_info.is_validation``, ``extra_info.judge_deferred``) are refused in the data: each would change
how the prompt's responses are judged (a rollout taken for an anchor, judge calls switched off).
``--on-invalid fail`` (default) stops with all errors listed before anything is written;
``--on-invalid drop`` writes the valid rows and reports how many rows of each kind were dropped.

Usage::

    python -m dagrpo_verl.data.prepare --input openr1.parquet --output train.parquet
    python -m dagrpo_verl.data.prepare --input Elliott/Openr1-Math-46k-8192 --split train \\
        --output train.parquet --on-invalid drop --report report.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dagrpo_verl.fields import ANCHOR_TEXT, IS_ANCHOR, IS_VALIDATION, JUDGE_DEFERRED, QUESTION
from dagrpo_verl.grading import GroundTruthError, ground_truth_text

__all__ = [
    "DataFileError",
    "DataValidationError",
    "PrepareResult",
    "RowError",
    "convert_row",
    "convert_rows",
    "load_rows",
    "main",
    "prepare",
    "read_rows",
    "write_rows",
]

CHAT_ROLES = ("system", "user", "assistant")
DEFAULT_ABILITY = "math"
DEFAULT_STYLE = "rule"
_MAX_LISTED_ERRORS = 20


@dataclass(frozen=True)
class RowError:
    """One problem in one input row.

    Attributes:
        row: 0-based position of the row in the input.
        field: the offending field, e.g. ``target`` or ``reward_model.ground_truth`` (``(row)``: the
            row itself is not an object).
        kind: short category used in drop counts: ``missing_anchor``, ``no_ground_truth``,
            ``bad_ground_truth``, ``bad_prompt``, ``no_data_source``, ``bad_extra_info``, ``bad_row``.
        message: what is wrong.
        fix: what to do about it.
        line: 1-based line of the row in a JSONL input, else None.
    """

    row: int
    field: str
    kind: str
    message: str
    fix: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" + (f" (line {self.line})" if self.line is not None else "")
        return f"{where}: field '{self.field}': {self.message}. Fix: {self.fix}."


class DataFileError(ValueError):
    """The input file itself cannot be read as rows (invalid JSON on a line, not UTF-8): the
    message names the file and the line."""


class DataValidationError(ValueError):
    """Some rows are invalid and ``on_invalid='fail'``; ``errors`` lists all of them."""

    def __init__(self, errors: list[RowError], total: int):
        self.errors = errors
        listed = "\n  ".join(str(e) for e in errors[:_MAX_LISTED_ERRORS])
        more = f"\n  ... and {len(errors) - _MAX_LISTED_ERRORS} more" if len(errors) > _MAX_LISTED_ERRORS else ""
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(Counter(e.kind for e in errors).items()))
        super().__init__(
            f"{len({e.row for e in errors})} of {total} rows are invalid ({kinds}):\n  {listed}{more}\n"
            "Fix the data, or pass --on-invalid drop to write only the valid rows."
        )


@dataclass
class PrepareResult:
    """Outcome of :func:`convert_rows`.

    Attributes:
        rows: converted valid rows, in input order.
        errors: every problem found (a row can have several).
        total: number of input rows.
        dropped: number of rows dropped (0 with ``on_invalid='fail'``, which raises instead).
        dropped_by_kind: ``{kind: rows}`` - a row with several problems counts under its first one.
    """

    rows: list[dict]
    errors: list[RowError]
    total: int
    dropped: int
    dropped_by_kind: dict[str, int]

    def summary(self) -> dict:
        """JSON-ready counts and the listed errors."""
        return {
            "total": self.total,
            "written": len(self.rows),
            "dropped": self.dropped,
            "dropped_by_kind": self.dropped_by_kind,
            "errors": [asdict(e) for e in self.errors],
        }


def _plain(value: Any) -> Any:
    """numpy arrays / scalars from parquet -> plain Python lists / scalars, recursively."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


class _WrittenFloat(float):
    """A JSON number with a fraction or exponent, remembering how it was written (``text``)."""

    def __new__(cls, text: str):
        number = super().__new__(cls, text)
        number.text = text
        return number


_PLAIN_DECIMAL = re.compile(r"-?\d+\.\d+")


def _ground_truth(value: Any, row: int) -> tuple[str | None, RowError | None]:
    """The ground truth as exact text (see the module docstring), or the error naming why not."""
    field = "reward_model.ground_truth"
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, RowError(
            row,
            field,
            "no_ground_truth",
            f"missing or empty ({value!r})",
            "give the reference final answer as reward_model.ground_truth",
        )
    if isinstance(value, _WrittenFloat) and _PLAIN_DECIMAL.fullmatch(value.text) and not value.is_integer():
        return value.text, None  # "2.50" stays "2.50"; "4.0" becomes "4" below
    try:
        return ground_truth_text(value, field), None
    except GroundTruthError as e:
        return None, RowError(
            row,
            field,
            "bad_ground_truth",
            str(e).removeprefix(f"{field} ").rstrip("."),
            "give the reference final answer as a string (or a finite number)",
        )


#: ``extra_info`` flags that the trainer sets on the samples it builds; a data row must not carry them.
_TRAINER_FLAGS = {
    IS_ANCHOR: "it marks the expert samples the anchor mixer adds, and a data row carrying it would give every "
    "rollout of the prompt the judge's maximum score",
    IS_VALIDATION: "the agent loop marks validation samples with it, and a training row carrying it would make no "
    "judge call for any rollout of the prompt (verl's own agent loop passes the data value through)",
    JUDGE_DEFERRED: "the DaGRPO agent loop marks the samples it judges itself with it, and a row carrying it would "
    "make no judge call for any rollout of the prompt where no DaGRPO agent loop judges",
}


def _check_extra_info(info: dict, row: int) -> list[RowError]:
    errors = [
        RowError(
            row,
            f"extra_info.{flag}",
            "bad_extra_info",
            f"is set in the data ({info[flag]!r}); {why}",
            f"remove extra_info.{flag} from the data (the expert solution goes in extra_info.{ANCHOR_TEXT} "
            "or the target column)",
        )
        for flag, why in _TRAINER_FLAGS.items()
        if flag in info
    ]
    question = info.get(QUESTION)
    if question is not None and not isinstance(question, str):
        errors.append(
            RowError(
                row,
                f"extra_info.{QUESTION}",
                "bad_extra_info",
                f"must be the problem statement as a string, got {type(question).__name__}",
                "store the problem text there, or leave it out (the last user message is used)",
            )
        )
    return errors


def _check_prompt(prompt: Any, row: int) -> tuple[list[dict] | None, RowError | None]:
    def error(message: str) -> RowError:
        return RowError(
            row,
            "prompt",
            "bad_prompt",
            message,
            "give a non-empty list of {role, content} chat messages (roles system/user/assistant, "
            "non-empty string content) ending with a user message",
        )

    if _missing(prompt):
        return None, error("missing")
    if isinstance(prompt, str):
        return None, error("is a plain string, not a list of chat messages")
    if not isinstance(prompt, list) or not prompt:
        return None, error(f"must be a non-empty list of messages, got {type(prompt).__name__} {prompt!r:.60}")
    messages = []
    for i, message in enumerate(prompt):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            return None, error(f"message {i} is not a {{role, content}} dict: {message!r:.60}")
        if message["role"] not in CHAT_ROLES:
            return None, error(f"message {i} has role {message['role']!r}, not one of {list(CHAT_ROLES)}")
        if not isinstance(message["content"], str) or not message["content"].strip():
            return None, error(f"message {i} has empty or non-string content")
        messages.append({"role": message["role"], "content": message["content"]})
    if messages[-1]["role"] != "user":
        return None, error(f"the last message is from {messages[-1]['role']!r}, not the user")
    return messages, None


def _anchor_from_target(target: Any, row: int, source: str) -> tuple[str | None, RowError | None]:
    def error(message: str) -> RowError:
        return RowError(
            row,
            source,
            "missing_anchor",
            message,
            "give the expert solution as a non-empty string or one assistant message "
            "(or drop the row with --on-invalid drop)",
        )

    if _missing(target):
        return None, error("missing (no expert solution)")
    if isinstance(target, str):
        text = target
    elif isinstance(target, list):
        contents = [m.get("content") for m in target if isinstance(m, dict) and m.get("role") == "assistant"]
        if len(contents) != 1:
            return None, error(f"must hold exactly one assistant message, found {len(contents)}")
        text = contents[0]
    else:
        return None, error(f"must be a string or a list of messages, got {type(target).__name__}")
    if not isinstance(text, str) or not text.strip():
        return None, error("the expert solution is empty")
    return text, None


def convert_row(
    raw: Any, row: int, *, split: str, anchor_field: str = "target", line: int | None = None
) -> tuple[dict | None, list]:
    """Convert one input row to the DaGRPO layout.

    Args:
        raw: the input row (a dict; numpy values are accepted; anything else is a ``bad_row``).
        row: its 0-based position (used in errors and as the default ``extra_info.index``).
        split: the default ``extra_info.split``.
        anchor_field: input column holding the expert answer; when the row has no such
            column, ``extra_info.anchor`` is used (already converted rows).
        line: its 1-based line in a JSONL input (named in errors), if any.

    Returns:
        ``(converted_row or None, errors)``.
    """
    converted, errors = _convert_row(raw, row, split=split, anchor_field=anchor_field)
    if line is not None:
        errors = [RowError(e.row, e.field, e.kind, e.message, e.fix, line) for e in errors]
    return converted, errors


def _convert_row(raw: Any, row: int, *, split: str, anchor_field: str) -> tuple[dict | None, list]:
    if not isinstance(raw, dict):
        what = "null" if raw is None else f"a {type(raw).__name__} ({str(raw)[:40]!r})"
        return None, [
            RowError(
                row,
                "(row)",
                "bad_row",
                f"is {what}, not an object with the row's fields",
                "write one JSON object per line (data_source, prompt, reward_model, ...)",
            )
        ]
    raw = _plain(dict(raw))
    errors: list[RowError] = []

    data_source = raw.get("data_source")
    if not isinstance(data_source, str) or not data_source.strip():
        errors.append(
            RowError(
                row,
                "data_source",
                "no_data_source",
                f"missing or empty ({data_source!r})",
                "give the data set name (it selects the reward function's scorer)",
            )
        )

    prompt, prompt_error = _check_prompt(raw.get("prompt"), row)
    if prompt_error:
        errors.append(prompt_error)

    reward_model = raw.get("reward_model")
    ground_truth, truth_error = _ground_truth(
        reward_model.get("ground_truth") if isinstance(reward_model, dict) else None, row
    )
    if truth_error:
        errors.append(truth_error)

    extra_info = raw.get("extra_info")
    if _missing(extra_info):
        extra_info = {}
    if not isinstance(extra_info, dict):
        errors.append(
            RowError(
                row,
                "extra_info",
                "bad_extra_info",
                f"must be a dict, got {type(extra_info).__name__}",
                "give extra_info as a {key: value} dict or leave it out",
            )
        )
        extra_info = {}
    errors.extend(_check_extra_info(extra_info, row))

    if anchor_field in raw:
        anchor, anchor_error = _anchor_from_target(raw.get(anchor_field), row, anchor_field)
    else:
        anchor, anchor_error = _anchor_from_target(extra_info.get(ANCHOR_TEXT), row, f"extra_info.{ANCHOR_TEXT}")
    if anchor_error:
        errors.append(anchor_error)

    if errors:
        return None, errors
    style = reward_model.get("style")
    info = dict(extra_info)
    info.setdefault("index", row)
    info.setdefault("split", split)
    info[ANCHOR_TEXT] = anchor
    if not (info.get(QUESTION) or "").strip():
        info[QUESTION] = prompt[-1]["content"]  # the judge's problem statement
    ability = raw.get("ability")
    return {
        "data_source": data_source,
        "prompt": prompt,
        "ability": ability if isinstance(ability, str) and ability else DEFAULT_ABILITY,
        "reward_model": {"ground_truth": ground_truth, "style": style if isinstance(style, str) else DEFAULT_STYLE},
        "extra_info": info,
    }, []


def convert_rows(
    rows: Iterable[dict],
    *,
    on_invalid: str = "fail",
    split: str = "train",
    anchor_field: str = "target",
    lines: list[int] | None = None,
) -> PrepareResult:
    """Convert and validate every row (see :func:`convert_row`).

    Args:
        rows: input rows.
        on_invalid: ``fail`` raises :class:`DataValidationError` listing every problem;
            ``drop`` keeps the valid rows and counts the dropped ones.
        split: default ``extra_info.split``.
        anchor_field: input column with the expert answer.
        lines: the 1-based input line of each row (JSONL, from :func:`read_rows`), named in errors.

    Raises:
        DataValidationError: invalid rows with ``on_invalid='fail'``, or no valid row at all.
    """
    if on_invalid not in ("fail", "drop"):
        raise ValueError(f"on_invalid={on_invalid!r} is not one of ['fail', 'drop'].")
    converted, errors, dropped_by_kind = [], [], Counter()
    total = 0
    for i, raw in enumerate(rows):
        total += 1
        line = lines[i] if lines is not None and i < len(lines) else None
        out, row_errors = convert_row(raw, i, split=split, anchor_field=anchor_field, line=line)
        if out is None:
            errors.extend(row_errors)
            dropped_by_kind[row_errors[0].kind] += 1
        else:
            converted.append(out)
    if total == 0:
        raise ValueError("the input has no rows.")
    if errors and (on_invalid == "fail" or not converted):
        raise DataValidationError(errors, total)
    return PrepareResult(converted, errors, total, total - len(converted), dict(dropped_by_kind))


def load_rows(source: str, *, split: str = "train") -> list[dict]:
    """Rows of a local ``.parquet`` / ``.jsonl`` / ``.json`` file, or of a Hugging Face data set name
    (:func:`read_rows` without the line numbers)."""
    return read_rows(source, split=split)[0]


def read_rows(source: str, *, split: str = "train") -> tuple[list, list[int] | None]:
    """``(rows, lines)``: the rows of ``source`` and, for JSONL, the 1-based line of each row
    (blank lines are skipped), else None. JSON numbers with a fraction or exponent remember how
    they were written (so a ground truth ``2.50`` stays ``2.50``).

    Raises:
        FileNotFoundError: ``source`` looks like a path (has a file suffix or a path separator
            that exists nowhere) but is not a file.
        DataFileError: a line that is not JSON, a file that is not UTF-8 (naming file and line).
        ValueError: unsupported file suffix.
    """
    path = pathlib.Path(source).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            import pandas as pd

            return pd.read_parquet(path).to_dict(orient="records"), None
        if suffix in (".jsonl", ".json"):
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise DataFileError(f"{path}: not UTF-8 text (byte {e.start}): {e.reason}.") from None
            if suffix == ".json" and text.lstrip().startswith("["):
                try:
                    return json.loads(text, parse_float=_WrittenFloat), None
                except (json.JSONDecodeError, RecursionError) as e:
                    why = f"{e.msg}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                    line_no = e.lineno if isinstance(e, json.JSONDecodeError) else "?"
                    raise DataFileError(f"{path} line {line_no}: not valid JSON ({why}).") from None
            rows, lines = [], []
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line, parse_float=_WrittenFloat))
                except (json.JSONDecodeError, RecursionError) as e:
                    why = f"{e.msg}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                    raise DataFileError(
                        f"{path} line {number}: not valid JSON ({why}); write one JSON object per line."
                    ) from None
                lines.append(number)
            return rows, lines
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .parquet, .jsonl or .json.")
    if path.suffix.lower() in (".parquet", ".jsonl", ".json") or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such file.")
    import datasets

    try:
        dataset = datasets.load_dataset(source, split=split)
    except Exception as e:  # offline, unknown name, no such split: say which and how to fix
        raise RuntimeError(
            f"could not load the Hugging Face data set {source!r} (split {split!r}): {e}. "
            "Check the name and the network, or download the parquet and pass its path."
        ) from e
    return list(dataset), None


def write_rows(rows: list[dict], output: str | pathlib.Path) -> pathlib.Path:
    """Write converted rows as ``.parquet`` (what verl's RLHFDataset reads) or ``.jsonl``."""
    out = pathlib.Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".jsonl":
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif out.suffix.lower() == ".parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(out, index=False)
    else:
        raise ValueError(f"{out}: unsupported output type {out.suffix!r}; use .parquet or .jsonl.")
    return out


def prepare(
    source: str,
    output: str | pathlib.Path,
    *,
    split: str = "train",
    on_invalid: str = "fail",
    anchor_field: str = "target",
    max_rows: int | None = None,
) -> PrepareResult:
    """Load ``source``, convert and validate it (:func:`convert_rows`), write ``output``.

    Nothing is written when validation fails.

    Raises:
        ValueError: ``max_rows`` < 1 (``--max-rows``), besides the errors of :func:`read_rows`
            and :func:`convert_rows`.
    """
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"--max-rows must be a whole number >= 1, got {max_rows!r}.")
    rows, lines = read_rows(source, split=split)
    if max_rows is not None:
        rows, lines = rows[:max_rows], None if lines is None else lines[:max_rows]
    result = convert_rows(rows, on_invalid=on_invalid, split=split, anchor_field=anchor_field, lines=lines)
    write_rows(result.rows, output)
    return result


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value} (leave --max-rows out to convert every row)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dagrpo_verl.data.prepare",
        description="Convert the OpenR1-Math-46k-8192 layout (expert answer in `target`) to DaGRPO's verl layout "
        "(expert answer in extra_info.anchor) and validate every row.",
    )
    parser.add_argument("--input", required=True, help="local .parquet/.jsonl/.json path, or a Hugging Face data set")
    parser.add_argument("--output", required=True, help="output .parquet (or .jsonl)")
    parser.add_argument("--split", default="train", help="HF split to load; default extra_info.split (train)")
    parser.add_argument("--on-invalid", choices=("fail", "drop"), default="fail", help="bad rows: stop, or drop+count")
    parser.add_argument("--anchor-field", default="target", help="input column with the expert answer (target)")
    parser.add_argument("--max-rows", type=_positive_int, default=None, help="convert only the first N rows (N >= 1)")
    parser.add_argument("--report", default=None, help="write the counts and every row error as JSON here")
    args = parser.parse_args(argv)
    return run_conversion(
        lambda: prepare(
            args.input,
            args.output,
            split=args.split,
            on_invalid=args.on_invalid,
            anchor_field=args.anchor_field,
            max_rows=args.max_rows,
        ),
        args.report,
        f"wrote {{rows}} of {{total}} rows to {args.output}",
    )


def run_conversion(convert: Callable[[], PrepareResult], report: str | None, done: str) -> int:
    """A data CLI's conversion: exit code 0 (done; ``done`` printed with ``{rows}``/``{total}`` filled in and the
    dropped rows by kind), 1 (rows failed validation) or 2 (the input could not be read or written); with
    ``report``, the summary or the row errors written there as JSON."""
    try:
        result = convert()
    except DataValidationError as e:
        if report:
            pathlib.Path(report).write_text(
                json.dumps({"errors": [asdict(err) for err in e.errors]}, indent=1), encoding="utf-8"
            )
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report:
        pathlib.Path(report).write_text(json.dumps(result.summary(), indent=1), encoding="utf-8")
    print(done.format(rows=len(result.rows), total=result.total) + f"; dropped {result.dropped}", end="")
    print(f" ({', '.join(f'{k}: {v}' for k, v in sorted(result.dropped_by_kind.items()))})" if result.dropped else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
