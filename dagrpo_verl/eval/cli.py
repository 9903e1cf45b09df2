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
"""Command line of the evaluator: ``python -m dagrpo_verl.eval --model PATH --out DIR``.

Writes into ``--out``: ``samples.jsonl`` (every graded sample; the resume cache),
``run.json`` (model and sampling settings), ``scores.csv`` (one line per
benchmark: problems, k, accuracy, mean response tokens, truncated fraction),
``table.csv`` and ``table.md`` (the paper's layout). Combine several runs into
one table with ``python -m dagrpo_verl.eval.table DIR [DIR ...]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from dagrpo_verl.eval.checkpoint import MERGED_MODEL_DIR, model_source, resolve_model
from dagrpo_verl.eval.data import DEFAULT_FILES, load_problems
from dagrpo_verl.eval.generate import SamplingSettings, make_generator
from dagrpo_verl.eval.report import BenchmarkScore, score, table_frame, to_markdown
from dagrpo_verl.eval.runner import RunInfo, evaluate, open_run, read_samples, regrade, samples_done
from dagrpo_verl.eval.suite import BENCHMARKS, parse_samples
from dagrpo_verl.grading.pool import GradingConfig, GradingConfigError

__all__ = ["SCORES_FILE", "build_parser", "main", "write_reports"]

SCORES_FILE = "scores.csv"


def build_parser() -> argparse.ArgumentParser:
    """The evaluator's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m dagrpo_verl.eval",
        description="Evaluate a model on the DaGRPO paper's 9 benchmarks (resumable).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        help="Hugging Face model directory or hub id, or a verl FSDP checkpoint (global_step_N[/actor], or the "
        "checkpoint root: its latest step), merged into OUT/merged_model when it holds no full model",
    )
    p.add_argument("--out", required=True, help="output directory (reused to resume)")
    p.add_argument("--name", default=None, help="row name in the table (default: the model directory's name)")
    p.add_argument("--data-dir", default="data/benchmarks", help=f"directory holding {', '.join(DEFAULT_FILES)}")
    p.add_argument("--data", nargs="+", default=None, help="evaluation parquets (instead of --data-dir)")
    keys = [b.key for b in BENCHMARKS]
    p.add_argument(
        "--benchmarks",
        nargs="+",
        default=None,
        choices=keys,
        metavar="KEY",
        help=f"evaluate only these ({', '.join(keys)})",
    )
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark (a quick slice)")
    p.add_argument(
        "--samples",
        nargs="+",
        default=[],
        metavar="KEY=K",
        help="samples per problem, e.g. all=1 aime24=32 (default: 32 for aime24/aime25/amc, else 1)",
    )
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "vllm", "hf"],
        help="auto: vLLM when installed and a GPU is visible, else transformers",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="prompts per generation call, the cache is written after each (default: 256 vllm, 4 hf)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="hf: sequences per generate() call")
    p.add_argument("--device", default=None, help="hf: torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default=None, help="hf: torch dtype (default: bfloat16 on GPU, float32 on CPU)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per replica")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm")
    p.add_argument("--max-model-len", type=int, default=None, help="vllm: prompt + response context length")
    p.add_argument("--regrade", action="store_true", help="grade the cached samples again before scoring")
    p.add_argument(
        "--grade-timeout-s",
        type=float,
        default=GradingConfig.timeout_s,
        help="bound of one grade; past it the answer scores 0 (counted in samples.jsonl grade_status)",
    )
    p.add_argument("--grade-workers", type=int, default=GradingConfig.workers, help="grading processes")
    p.add_argument(
        "--score-only",
        action="store_true",
        help="generate nothing: score the samples cached so far (e.g. while a run is going)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def write_reports(out_dir: str | Path, name: str, scores: dict[str, BenchmarkScore]) -> str:
    """Write ``scores.csv``, ``table.csv`` and ``table.md`` into ``out_dir``; return the Markdown."""
    out = Path(out_dir)
    long = pd.DataFrame([{"model": name, **asdict(s)} for s in scores.values()])
    long.to_csv(out / SCORES_FILE, index=False)
    frame = table_frame({name: scores})
    frame.round(2).to_csv(out / "table.csv")
    markdown = to_markdown(frame, {name: scores})
    (out / "table.md").write_text(markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; print the table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        samples = parse_samples(args.samples)
    except ValueError as error:
        parser.error(str(error))
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}.")
    try:
        grading = GradingConfig(timeout_s=args.grade_timeout_s, workers=args.grade_workers)
    except GradingConfigError as error:
        parser.error(f"--grade-timeout-s/--grade-workers: {error}")
    try:
        source = model_source(args.model)  # a verl checkpoint's directory, checked before any data is read
    except ValueError as error:
        parser.error(f"--model: {error}")
    if args.data:
        files = [Path(f) for f in args.data]
    else:
        files = [Path(args.data_dir) / f for f in DEFAULT_FILES if (Path(args.data_dir) / f).is_file()]
        if not files:
            raise SystemExit(
                f"no evaluation parquets in {args.data_dir} (looked for {', '.join(DEFAULT_FILES)}); "
                "prepare them with `python -m dagrpo_verl.data.benchmarks --out DIR` and pass --data-dir DIR."
            )
    problems = load_problems(files)
    if args.benchmarks:
        problems = [p for p in problems if p.benchmark.key in args.benchmarks]
    if args.limit:
        counts: dict[str, int] = {}
        kept = []
        for p in problems:
            counts[p.benchmark.key] = counts.get(p.benchmark.key, 0) + 1
            if counts[p.benchmark.key] <= args.limit:
                kept.append(p)
        problems = kept
    if not problems:
        raise SystemExit("no problems left to evaluate; check --benchmarks against the data's data_source values.")
    settings = SamplingSettings(args.temperature, args.top_p, args.max_new_tokens, args.seed)
    name = args.name or Path(args.model.rstrip("/")).name
    open_run(
        args.out,
        RunInfo(name, source, settings.temperature, settings.top_p, settings.max_new_tokens, settings.seed),
    )
    wanted = {p.uid for p in problems}
    done = samples_done(read_samples(args.out))
    missing = sum(max(0, samples[p.benchmark.key] - done.get(p.uid, 0)) for p in problems)
    start = time.perf_counter()
    if args.regrade:
        regrade(args.out, progress=not args.no_progress, grading=grading)
    if missing and not args.score_only:
        generator = make_generator(
            args.backend,
            resolve_model(args.model, Path(args.out) / MERGED_MODEL_DIR),
            settings,
            batch_size=args.batch_size,
            device=args.device,
            dtype=args.dtype,
            tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
        )
        chunk_size = args.chunk_size or (256 if generator.name == "vllm" else 4)
        records = evaluate(
            problems, generator, samples, args.out, chunk_size, progress=not args.no_progress, grading=grading
        )
    else:
        records = read_samples(args.out)
    records = [r for r in records if r.uid in wanted]
    markdown = write_reports(args.out, name, score(records, samples))
    print(markdown)
    if args.score_only:
        missing = 0
    failed = {status: sum(r.grade_status == status for r in records) for status in ("timeout", "error")}
    print(
        f"eval: {len(problems)} problems, {missing} new samples in {time.perf_counter() - start:.1f} s; "
        f"grading timeouts {failed['timeout']}, errors {failed['error']} (scored 0); results in {args.out}"
    )
    return 0
