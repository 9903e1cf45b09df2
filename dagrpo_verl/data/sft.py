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
"""The expert solutions of the training data as verl's SFT layout: ``python -m dagrpo_verl.data.sft``.

The paper's SFT baseline trains on the same expert solutions that DaGRPO mixes in as
anchors. This module turns the training parquet of ``python -m dagrpo_verl.data.prepare``
(prompt + ``extra_info.anchor``; the raw OpenR1 layout with a ``target`` column is accepted
too) into the layout of verl 0.9.1's ``MultiTurnSFTDataset`` (``verl.trainer.sft_trainer``)::

    messages:    list of {role, content}   the prompt's messages + {"role": "assistant", "content": anchor}
    data_source: str                       kept for bookkeeping
    extra_info:  {index: int, split: str}  the row's index in the training data

verl applies the model's chat template to ``messages`` and trains on the assistant turn
only, so the model sees exactly the prompt the RL trainer renders and learns the anchor text
unchanged (nothing is stripped: DaGRPO's anchors are trained as they are, so the baseline is).

Validation:

* every row goes through :func:`dagrpo_verl.data.prepare.convert_row` (prompt, anchor,
  ground truth, data source: the rows the RL recipes train on, with the same named
  errors);
* with ``tokenizer`` and ``max_length``, every conversation is also tokenized by verl's own
  ``MultiTurnSFTDataset`` (chat template per turn, its per-turn/whole-conversation
  consistency check, ``truncation=error``), so a row verl would fail on mid-run is found
  here: kind ``too_long`` (more than ``max_length`` tokens) or ``template_mismatch``.

``on_invalid='fail'`` (default) raises :class:`~dagrpo_verl.data.prepare.DataValidationError`
listing every bad row before anything is written; ``'drop'`` writes the valid rows and counts
the dropped ones per kind (printed, and in ``--report``).

Usage::

    python -m dagrpo_verl.data.sft --input data/openr1/train.parquet --output data/openr1/sft.parquet \\
        --tokenizer Qwen/Qwen2.5-Math-7B --max-length 9216 --on-invalid drop --report sft_report.json
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from typing import Any

from dagrpo_verl.data.prepare import (
    DataValidationError,
    PrepareResult,
    RowError,
    convert_row,
    load_rows,
    run_conversion,
)
from dagrpo_verl.fields import ANCHOR_TEXT

__all__ = [
    "MESSAGES_KEY",
    "ROWS_PER_WORKER",
    "check_token_lengths",
    "convert_rows",
    "main",
    "sft_row",
    "to_sft",
    "write_parquet",
]

#: Column holding the conversation (verl's ``data.messages_key`` default).
MESSAGES_KEY = "messages"

#: Row-error kinds added by the tokenizer check (the others are prepare's).
TOO_LONG = "too_long"
TEMPLATE_MISMATCH = "template_mismatch"
TEMPLATE_ERROR = "template_error"

#: Rows per tokenizing process when :func:`to_sft` chooses the number of workers (a process costs
#: a few seconds of start-up; 1,000 rows of 6,000 tokens take about a minute on one core).
ROWS_PER_WORKER = 1000


def sft_row(raw: dict, row: int, *, split: str = "train", anchor_field: str = "target") -> tuple[dict | None, list]:
    """One training row as an SFT row: ``(row or None, errors)`` (errors from :func:`convert_row`)."""
    converted, errors = convert_row(raw, row, split=split, anchor_field=anchor_field)
    if converted is None:
        return None, errors
    info = converted["extra_info"]
    return {
        MESSAGES_KEY: converted["prompt"] + [{"role": "assistant", "content": info[ANCHOR_TEXT]}],
        "data_source": converted["data_source"],
        "extra_info": {"index": int(info["index"]), "split": str(info["split"])},
    }, []


def write_parquet(rows: list[dict], output: str | os.PathLike) -> pathlib.Path:
    """Write ``rows`` to ``output`` atomically (temporary file, then rename), so concurrent writers
    (one recipe per node) and readers never see half a file."""
    import pandas as pd

    out = pathlib.Path(output)
    if out.suffix.lower() != ".parquet":
        raise ValueError(f"{out}: the SFT trainer reads parquet; give an output path ending in .parquet.")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".parquet", dir=out.parent)
    os.close(fd)
    try:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _row_error(row: int, error: Exception) -> RowError:
    """The :class:`RowError` for an exception verl's ``MultiTurnSFTDataset.__getitem__`` raised on a row."""
    message = (str(error).splitlines() or [type(error).__name__])[0]
    if isinstance(error, ValueError) and "is larger than" in message:  # f"{sequence_length=} is larger than ..."
        return RowError(
            row, MESSAGES_KEY, TOO_LONG, message, "raise --max-length (and data.max_length) or drop the row"
        )
    if isinstance(error, AssertionError):  # its per-turn vs whole-conversation token check
        return RowError(row, MESSAGES_KEY, TEMPLATE_MISMATCH, message,
                        "fix the chat template, or set data.ignore_input_ids_mismatch=true in the SFT run")  # fmt: skip
    return RowError(row, MESSAGES_KEY, TEMPLATE_ERROR, f"{type(error).__name__}: {message}",
                    "check the messages against the model's chat template (roles, order)")  # fmt: skip


def _dataset_errors(rows: list[dict], tokenizer: Any, max_length: int, positions: list[int], progress: bool):
    """:func:`check_token_lengths` on one chunk of rows, in this process."""
    from omegaconf import OmegaConf
    from tqdm import tqdm
    from verl.utils import hf_tokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = hf_tokenizer(str(tokenizer))
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_parquet(rows, pathlib.Path(tmp) / "rows.parquet")
        config = OmegaConf.create(
            {"max_length": max_length, "truncation": "error", "pad_mode": "no_padding", "messages_key": MESSAGES_KEY}
        )
        dataset = MultiTurnSFTDataset(parquet_files=str(path), tokenizer=tokenizer, config=config)
        for i in tqdm(range(len(dataset)), desc="sft: tokenizing", disable=not progress, mininterval=2):
            try:
                dataset[i]
            except Exception as e:  # a row verl would fail on mid-run: name it here instead
                errors.append(_row_error(positions[i], e))
    return errors


def check_token_lengths(
    rows: list[dict],
    tokenizer: Any,
    max_length: int,
    *,
    positions: list[int] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> list[RowError]:
    """Tokenize every SFT row with verl's ``MultiTurnSFTDataset`` and return the rows it would fail on.

    verl tokenizes each turn and then the whole conversation (its consistency check), about 70 ms
    for a 6,000-token row on one core (measured): OpenR1-Math-46k takes about an hour on one core,
    so large inputs are split over ``workers`` processes.

    Args:
        rows: SFT rows (:func:`sft_row` output).
        tokenizer: a Hugging Face tokenizer, or a path / hub id to load one from (a path or id
            when ``workers > 1``: each worker process loads its own).
        max_length: ``data.max_length`` of the SFT run (prompt + answer tokens, chat template included).
        positions: each row's position in the input (for the errors); default ``0..len(rows)-1``.
        workers: processes (spawned) that tokenize contiguous chunks; 1 tokenizes here.
        progress: show a progress bar.

    Returns:
        one :class:`RowError` per failing row, in row order, kind ``too_long``,
        ``template_mismatch`` (verl's per-turn tokens differ from the whole conversation's) or
        ``template_error`` (the chat template raised).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1 token, got {max_length}.")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    positions = list(range(len(rows))) if positions is None else positions
    if workers == 1 or len(rows) < 2:
        return _dataset_errors(rows, tokenizer, max_length, positions, progress)
    if not isinstance(tokenizer, (str, os.PathLike)):
        raise ValueError("workers > 1 needs the tokenizer as a path or hub id (each worker process loads it).")
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    size = -(-len(rows) // (4 * workers))  # 4 chunks per worker: an even finish
    chunks = [(rows[i : i + size], positions[i : i + size]) for i in range(0, len(rows), size)]
    errors = []
    context = multiprocessing.get_context("spawn")  # no fork of a process holding tokenizer threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_dataset_errors, r, str(tokenizer), max_length, p, False) for r, p in chunks]
        for future in tqdm(as_completed(futures), total=len(futures), desc="sft: tokenizing", disable=not progress):
            errors.extend(future.result())
    return sorted(errors, key=lambda e: e.row)


def convert_rows(
    rows: Iterable[dict],
    *,
    on_invalid: str = "fail",
    split: str = "train",
    anchor_field: str = "target",
    tokenizer: Any = None,
    max_length: int | None = None,
    workers: int = 1,
    progress: bool = True,
) -> PrepareResult:
    """Convert and validate every row (:func:`sft_row`, then :func:`check_token_lengths` when
    ``tokenizer`` and ``max_length`` are given).

    Raises:
        DataValidationError: invalid rows with ``on_invalid='fail'``, or no valid row at all.
        ValueError: ``on_invalid`` unknown, no input row, or only one of ``tokenizer``/``max_length``.
    """
    if on_invalid not in ("fail", "drop"):
        raise ValueError(f"on_invalid={on_invalid!r} is not one of ['fail', 'drop'].")
    if (tokenizer is None) != (max_length is None):
        raise ValueError("give both tokenizer and max_length (the token-length check needs both), or neither.")
    converted, positions, errors = [], [], []
    total = 0
    for i, raw in enumerate(rows):
        total += 1
        out, row_errors = sft_row(raw, i, split=split, anchor_field=anchor_field)
        if out is None:
            errors.extend(row_errors)
        else:
            converted.append(out)
            positions.append(i)
    if total == 0:
        raise ValueError("the input has no rows.")
    if tokenizer is not None and converted:
        length_errors = check_token_lengths(
            converted, tokenizer, max_length, positions=positions, workers=workers, progress=progress
        )
        bad = {e.row for e in length_errors}
        converted = [r for r, p in zip(converted, positions, strict=True) if p not in bad]
        errors.extend(length_errors)
    errors.sort(key=lambda e: e.row)  # stable: a row's own errors keep their order
    if errors and (on_invalid == "fail" or not converted):
        raise DataValidationError(errors, total)
    first_kind: dict[int, str] = {}
    for e in errors:
        first_kind.setdefault(e.row, e.kind)
    return PrepareResult(converted, errors, total, total - len(converted), dict(Counter(first_kind.values())))


def to_sft(
    source: str,
    output: str | os.PathLike,
    *,
    on_invalid: str = "fail",
    split: str = "train",
    anchor_field: str = "target",
    tokenizer: Any = None,
    max_length: int | None = None,
    max_rows: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> PrepareResult:
    """Load ``source`` (:func:`dagrpo_verl.data.prepare.load_rows`), convert it (:func:`convert_rows`),
    write ``output``. Nothing is written when validation fails.

    ``workers=None`` tokenizes here below :data:`ROWS_PER_WORKER` x 2 rows, otherwise on one
    process per :data:`ROWS_PER_WORKER` rows, at most the machine's cores (and 16).
    """
    rows = load_rows(source, split=split)
    if max_rows is not None:
        rows = rows[:max_rows]
    if workers is None:
        workers = max(1, min(16, os.cpu_count() or 1, len(rows) // ROWS_PER_WORKER))
    result = convert_rows(
        rows,
        on_invalid=on_invalid,
        split=split,
        anchor_field=anchor_field,
        tokenizer=tokenizer,
        max_length=max_length,
        workers=workers,
        progress=progress,
    )
    write_parquet(result.rows, output)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dagrpo_verl.data.sft",
        description="Training data with expert solutions (python -m dagrpo_verl.data.prepare output, or the OpenR1 "
        "layout) -> verl's SFT layout (messages = prompt + the expert solution as the assistant turn).",
    )
    parser.add_argument("--input", required=True, help="training .parquet/.jsonl/.json, or a Hugging Face data set")
    parser.add_argument("--output", required=True, help="output .parquet for verl.trainer.sft_trainer")
    parser.add_argument("--tokenizer", default=None, help="model/tokenizer path: check every row's token length")
    parser.add_argument("--max-length", type=int, default=None, help="the SFT run's data.max_length (with --tokenizer)")
    parser.add_argument("--on-invalid", choices=("fail", "drop"), default="fail", help="bad rows: stop, or drop+count")
    parser.add_argument("--split", default="train", help="HF split to load; default extra_info.split (train)")
    parser.add_argument("--anchor-field", default="target", help="input column with the expert answer, if any")
    parser.add_argument("--max-rows", type=int, default=None, help="convert only the first N rows")
    parser.add_argument("--report", default=None, help="write the counts and every row error as JSON here")
    parser.add_argument(
        "--workers", type=int, default=None, help="tokenizing processes (default: one per 1,000 rows, <= cores, <= 16)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if (args.tokenizer is None) != (args.max_length is None):
        parser.error("--tokenizer and --max-length go together (the token-length check needs both).")
    checked = f", token lengths checked (max {args.max_length})" if args.tokenizer else ""
    return run_conversion(
        lambda: to_sft(
            args.input,
            args.output,
            on_invalid=args.on_invalid,
            split=args.split,
            anchor_field=args.anchor_field,
            tokenizer=args.tokenizer,
            max_length=args.max_length,
            max_rows=args.max_rows,
            workers=args.workers,
            progress=not args.no_progress,
        ),
        args.report,
        f"sft: wrote {{rows}} of {{total}} rows to {args.output}{checked}",
    )


if __name__ == "__main__":
    sys.exit(main())
