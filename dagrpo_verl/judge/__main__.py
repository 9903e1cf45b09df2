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
"""Score a JSONL or parquet file of (question, response, reference) with the judge.

    python -m dagrpo_verl.judge --input items.jsonl --output scored.jsonl \\
        --backend openai --base-url http://127.0.0.1:8000/v1 --model my-judge --api-key-env OPENAI_API_KEY

Every :class:`~dagrpo_verl.judge.config.JudgeConfig` key is an option (``--max-concurrency``,
``--deadline-s``, ...). The output holds one row per input row, in order: the input fields
plus ``judge_score`` (null in JSONL / NaN in parquet where the score is missing) and
``judge_error`` (why a row got no score without a judge call, else null). A row whose
question, response or reference is null, missing or not text, or a JSONL line that is not a
JSON object, gets a missing score and its reason; it never stops the other rows. The JSONL
output is strict JSON (no NaN/Infinity). The ``judge/*`` metrics go to stderr as one JSON
line, with ``judge/invalid_rows``. Items are scored in chunks of ``--chunk-size``, each with
its own deadline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from dagrpo_verl.fields import JUDGE_SCORE
from dagrpo_verl.judge.config import JudgeConfig, judge_config_from
from dagrpo_verl.judge.core import get_judge
from dagrpo_verl.judge.metrics import pop_metrics
from dagrpo_verl.judge.scorers import JudgeItem

#: Output column: why the row got no score without a judge call (null otherwise).
JUDGE_ERROR = "judge_error"
#: Longest JSONL line read; a longer one is a bad row (read past, not kept in memory).
MAX_LINE_BYTES = 256 << 20
_NESTING_LIMIT = 64  # parquet values deeper than this are written as text


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dagrpo_verl.judge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help=".jsonl or .parquet with one item per row")
    parser.add_argument("--output", required=True, help=".jsonl or .parquet to write")
    parser.add_argument("--question-key", default="question")
    parser.add_argument("--response-key", default="response")
    parser.add_argument("--reference-key", default="reference")
    parser.add_argument(
        "--reference-kind",
        default="solution",
        choices=["solution", "answer"],
        help="what the reference column holds: worked solutions or final answers only",
    )
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    group = parser.add_argument_group("judge settings (see docs/judge.md)")
    for field in dataclasses.fields(JudgeConfig):
        kind = {bool: _parse_bool, int: int, float: float}.get(type(field.default), str)
        group.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=kind, default=field.default)
    return parser


# ---- reading -------------------------------------------------------------------------------
def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None  # 1e400 would be inf: not JSON, written as null


def _lines(stream: BinaryIO) -> Iterator[bytes | None]:
    """The lines of ``stream`` without their end; None for a line over :data:`MAX_LINE_BYTES`
    (read past in pieces, never held whole)."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield None
            continue
        yield line.rstrip(b"\r\n")


def _read_jsonl(path: str) -> tuple[list[dict], list[str | None]]:
    """Rows (dicts; {} for a bad line) and, per row, why it is bad (None when it is fine)."""
    rows, errors = [], []
    with open(path, "rb") as stream:
        for number, line in enumerate(_lines(stream), start=1):
            if line is not None and not line.strip():
                continue  # blank lines are not rows
            if line is None:
                rows.append({})
                errors.append(f"line {number}: longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                row = json.loads(line, parse_constant=lambda name: None, parse_float=_finite_float)
            except (ValueError, RecursionError) as exc:
                reason = "nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
                rows.append({})
                errors.append(f"line {number}: not valid JSON ({reason})")
                continue
            if not isinstance(row, dict):
                rows.append({})
                errors.append(f"line {number}: a JSON {type(row).__name__}, not an object")
                continue
            rows.append(row)
            errors.append(None)
    return rows, errors


def _read(path: str) -> tuple[list[dict], list[str | None]]:
    if not path.endswith((".jsonl", ".parquet")):
        raise SystemExit(f"--input {path!r}: use a .jsonl or .parquet file")
    try:
        if path.endswith(".jsonl"):
            return _read_jsonl(path)
        import pandas as pd

        rows = pd.read_parquet(path).to_dict(orient="records")
        return rows, [None] * len(rows)
    except OSError as exc:  # missing, unreadable
        raise SystemExit(f"--input {path!r}: {type(exc).__name__}: {exc.strerror or exc}") from None
    except Exception as exc:  # a parquet file pyarrow cannot read
        raise SystemExit(f"--input {path!r} is not a readable parquet file ({type(exc).__name__})") from None


def _text(row: dict, key: str) -> tuple[str | None, str | None]:
    """(text, None) for a usable field value, or (None, why not). Numbers become their decimal
    text; null, NaN, bool and containers are refused."""
    if key not in row:
        return None, f"no {key!r} field"
    value = row[key]
    if isinstance(value, str):
        return value, None
    if value is None or type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values
        return None, f"{key} is null"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value)), None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if math.isfinite(float(value)):
            return repr(float(value)), None
        return None, f"{key} is null" if math.isnan(float(value)) else f"{key} is {float(value)!r}"  # NaN: pandas' null
    return None, f"{key} is not text (got {type(value).__name__})"


# ---- writing -------------------------------------------------------------------------------
def _jsonable(value: Any, depth: int = 0) -> Any:
    """A parquet value as plain JSON data (NaN -> null, arrays -> lists, bytes -> text)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if depth >= _NESTING_LIMIT:
        return str(value)[:1000]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _jsonable(value.tolist(), depth + 1)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _json_line(record: dict) -> bytes:
    """One strict-JSON line; non-ASCII kept readable unless the text holds lone surrogates."""
    text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(record, ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"


def _write_jsonl(rows: list[dict], path: str, from_parquet: bool) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        for row in rows:
            try:
                out.write(_json_line(_jsonable(row) if from_parquet else row))
            except (ValueError, TypeError, RecursionError, OverflowError) as exc:
                fallback = {JUDGE_SCORE: row[JUDGE_SCORE], JUDGE_ERROR: row[JUDGE_ERROR]}
                if fallback[JUDGE_ERROR] is None:
                    fallback[JUDGE_ERROR] = f"the input fields could not be written as JSON ({type(exc).__name__})"
                out.write(_json_line(fallback))
    os.replace(tmp, path)


def _write_parquet(rows: list[dict], path: str) -> None:
    import pandas as pd

    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame({JUDGE_SCORE: [], JUDGE_ERROR: []})
    frame[JUDGE_SCORE] = frame[JUDGE_SCORE].astype(float)  # missing = NaN in parquet
    tmp = path + ".tmp"
    try:
        frame.to_parquet(tmp, index=False)
    except Exception as exc:  # pyarrow cannot type a column (mixed types across JSONL rows)
        if os.path.exists(tmp):
            os.remove(tmp)
        fallback = path[: -len(".parquet")] + ".jsonl"
        _write_jsonl(rows, fallback, from_parquet=True)
        raise SystemExit(
            f"--output {path!r}: the rows cannot be stored as parquet ({type(exc).__name__}: {str(exc)[:200]}); "
            f"all {len(rows)} scored rows were written to {fallback!r} instead."
        ) from None
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.output.endswith((".jsonl", ".parquet")):
        raise SystemExit(f"--output {args.output!r}: use a .jsonl or .parquet file")
    if args.chunk_size < 1:
        raise SystemExit(f"--chunk-size must be >= 1, got {args.chunk_size}")
    try:
        config = judge_config_from({f.name: getattr(args, f.name) for f in dataclasses.fields(JudgeConfig)})
    except ValueError as exc:  # name the command-line option, not only the verl key
        raise SystemExit(f"invalid judge setting (options use --key-name for judge.key_name): {exc}") from None
    rows, errors = _read(args.input)
    columns = (args.question_key, args.response_key, args.reference_key)
    missing = [c for c in columns if not any(c in row for row in rows)]
    if rows and missing:
        present = sorted({str(k) for row in rows for k in row})
        raise SystemExit(
            f"{args.input}: missing column(s) {missing}; name them with --question-key/--response-key/"
            f"--reference-key (columns present: {present})"
        )
    items, positions = [], []
    for position, row in enumerate(rows):
        if errors[position] is None:
            texts = [_text(row, key) for key in columns]
            reasons = [reason for _, reason in texts if reason]
            if reasons:
                errors[position] = "; ".join(reasons)
            else:
                items.append(JudgeItem(texts[0][0], texts[1][0], texts[2][0], args.reference_kind))
                positions.append(position)
    invalid = sum(error is not None for error in errors)
    if invalid:
        print(
            f"judge: {invalid} of {len(rows)} rows have no usable question/response/reference; their "
            f"{JUDGE_SCORE} is null and {JUDGE_ERROR} says why.",
            file=sys.stderr,
        )
    pop_metrics()
    scores = get_judge(config).score_sync(items, progress=not args.no_progress, chunk_size=args.chunk_size)
    by_position = dict(zip(positions, scores, strict=True))
    out_rows = []
    for position, row in enumerate(rows):
        score = by_position.get(position, math.nan)
        record = dict(row)
        record[JUDGE_SCORE] = None if math.isnan(score) else score
        record[JUDGE_ERROR] = errors[position]
        out_rows.append(record)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if args.output.endswith(".parquet"):
        _write_parquet(out_rows, args.output)
    else:
        _write_jsonl(out_rows, args.output, from_parquet=args.input.endswith(".parquet"))
    metrics = {k: (None if math.isnan(v) else v) for k, v in pop_metrics().items()}
    metrics["judge/invalid_rows"] = invalid
    print(json.dumps(metrics, allow_nan=False), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
