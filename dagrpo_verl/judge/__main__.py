"""Score a JSONL or parquet file of (question, response, reference) with the judge.

    python -m dagrpo_verl.judge --input items.jsonl --output scored.jsonl \\
        --backend openai --base-url http://127.0.0.1:8000/v1 --model my-judge --api-key-env OPENAI_API_KEY

Every :class:`~dagrpo_verl.judge.config.JudgeConfig` key is an option (``--max-concurrency``,
``--deadline-s``, ...). The output holds the input rows plus a ``judge_score`` column (null in
JSONL / NaN in parquet where the score is missing); the ``judge/*`` metrics go to stderr as
one JSON line. Items are scored in chunks of ``--chunk-size``, each with its own deadline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

import pandas as pd

from dagrpo_verl.fields import JUDGE_SCORE
from dagrpo_verl.judge.config import JudgeConfig, judge_config_from
from dagrpo_verl.judge.core import get_judge
from dagrpo_verl.judge.metrics import pop_metrics
from dagrpo_verl.judge.scorers import JudgeItem


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
        "--reference-kind", default="solution", choices=["solution", "answer"],
        help="what the reference column holds: worked solutions or final answers only",
    )
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    group = parser.add_argument_group("judge settings (see docs/judge.md)")
    for field in dataclasses.fields(JudgeConfig):
        kind = {bool: _parse_bool, int: int, float: float}.get(type(field.default), str)
        group.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=kind, default=field.default)
    return parser


def _read(path: str) -> pd.DataFrame:
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    if path.endswith(".jsonl"):
        return pd.read_json(path, lines=True, dtype=False)
    raise SystemExit(f"--input {path!r}: use a .jsonl or .parquet file")


def _write(frame: pd.DataFrame, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".parquet"):
        frame.to_parquet(path, index=False)
        return
    with open(path, "w", encoding="utf-8") as out:
        for record in frame.to_dict(orient="records"):
            score = record[JUDGE_SCORE]
            record[JUDGE_SCORE] = None if math.isnan(score) else score
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


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
    frame = _read(args.input)
    columns = (args.question_key, args.response_key, args.reference_key)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SystemExit(f"{args.input}: missing column(s) {missing}; name them with --question-key/--response-key/"
                         f"--reference-key (columns present: {list(frame.columns)})")
    items = [
        JudgeItem(str(q), str(r), str(ref), args.reference_kind)
        for q, r, ref in zip(frame[columns[0]], frame[columns[1]], frame[columns[2]])
    ]
    pop_metrics()
    scores = get_judge(config).score_sync(items, progress=not args.no_progress, chunk_size=args.chunk_size)
    frame = frame.assign(**{JUDGE_SCORE: scores})
    _write(frame, args.output)
    metrics = pop_metrics()
    print(json.dumps({k: (None if math.isnan(v) else v) for k, v in metrics.items()}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
