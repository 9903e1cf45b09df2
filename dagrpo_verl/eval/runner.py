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
"""The evaluation loop: sample, grade, and append to a resumable cache.

An output directory holds ``run.json`` (the model and sampling settings) and
``samples.jsonl`` (one graded sample per line, appended and flushed chunk by
chunk). Rerunning into the same directory generates only the samples that are
still missing, so an interrupted run resumes where it stopped, and raising a
benchmark's k later adds just the extra samples.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from dagrpo_verl.eval.data import Problem
from dagrpo_verl.eval.generate import Generator, Request, SamplingSettings, prompt_text
from dagrpo_verl.grading.pool import GradingConfig, get_grading_pool

__all__ = [
    "RUN_FILE",
    "SAMPLES_FILE",
    "RunInfo",
    "SampleRecord",
    "evaluate",
    "open_run",
    "read_samples",
    "regrade",
    "samples_done",
]

SAMPLES_FILE = "samples.jsonl"
RUN_FILE = "run.json"


@dataclass
class SampleRecord:
    """One graded sample (a line of ``samples.jsonl``)."""

    uid: str
    benchmark: str
    data_source: str
    sample: int
    response: str
    num_tokens: int
    truncated: bool
    correct: bool
    ground_truth: str
    #: how grading ended: ``ok``, ``timeout`` or ``error`` (both scored not correct); see
    #: :class:`dagrpo_verl.grading.pool.GradeStatus`. Caches written before it existed read ``ok``.
    grade_status: str = "ok"


@dataclass(frozen=True)
class RunInfo:
    """``run.json``: what produced the samples of an output directory."""

    name: str
    model: str
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    @property
    def settings(self) -> SamplingSettings:
        """The sampling settings of the run."""
        return SamplingSettings(self.temperature, self.top_p, self.max_new_tokens, self.seed)


def read_samples(out_dir: str | Path) -> list[SampleRecord]:
    """The cached samples of an output directory (a torn last line from a killed run is skipped)."""
    path = Path(out_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                records.append(SampleRecord(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue
    return records


def samples_done(records: list[SampleRecord]) -> dict[str, int]:
    """Per problem uid, the number of leading samples already cached (next sample index)."""
    done: dict[str, int] = {}
    for r in records:
        done[r.uid] = max(done.get(r.uid, 0), r.sample + 1)
    return done


def open_run(out_dir: str | Path, info: RunInfo) -> None:
    """Create ``out_dir`` with ``run.json``, or check that an existing run used the same settings.

    Raises a ``ValueError`` naming the first differing setting.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        for key in ("model", "temperature", "top_p", "max_new_tokens", "seed"):
            if old.get(key) != getattr(info, key):
                raise ValueError(
                    f"{out} holds samples made with {key}={old.get(key)!r}, this run asks for "
                    f"{key}={getattr(info, key)!r}; use another --out directory (or delete {out}) to start over."
                )
        return
    path.write_text(json.dumps(asdict(info), indent=2) + "\n")


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without newline (a write the killed run did not finish) so appends start clean."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _seed(base: int, uid: str, first_sample: int) -> int:
    return (base * 1_000_003 + zlib.crc32(uid.encode()) + first_sample) % (2**31)


def evaluate(
    problems: list[Problem],
    generator: Generator,
    samples: dict[str, int],
    out_dir: str | Path,
    chunk_size: int = 64,
    progress: bool = True,
    grading: GradingConfig | None = None,
) -> list[SampleRecord]:
    """Make sure every problem has ``samples[benchmark]`` graded samples in ``out_dir``; return them all.

    Args:
        problems: the problems to evaluate.
        generator: the generation backend (its tokenizer renders the chat template).
        samples: samples per problem, by benchmark key.
        out_dir: output directory already set up by :func:`open_run`.
        chunk_size: requests (prompts) per generation call; the cache is written after each chunk.
        progress: show a tqdm bar over the samples still to generate.
        grading: the grading bound (the reward function's bounded path, :mod:`dagrpo_verl.grading.pool`).
    """
    if chunk_size < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {chunk_size}.")
    path = Path(out_dir) / SAMPLES_FILE
    _drop_torn_tail(path)
    cached = read_samples(out_dir)
    have = samples_done(cached)
    # Round-robin over benchmarks (1st problem of each, then 2nd...), so that an interrupted run has
    # covered every benchmark evenly.
    rank: dict[str, int] = {}
    ranked = []
    for p in problems:
        rank[p.benchmark.key] = rank.get(p.benchmark.key, 0) + 1
        ranked.append((rank[p.benchmark.key], p))
    ordered = [p for _, p in sorted(ranked, key=lambda t: t[0])]
    todo = [(p, have.get(p.uid, 0), samples[p.benchmark.key] - have.get(p.uid, 0)) for p in ordered]
    todo = [t for t in todo if t[2] > 0]
    seed = generator.settings.seed
    pool = get_grading_pool(grading)
    bar = tqdm(total=sum(t[2] for t in todo), desc="eval/generate", unit="sample", disable=not progress)
    with path.open("a", encoding="utf-8") as f:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            requests = [
                Request(prompt_text(generator.tokenizer, p.messages), n, _seed(seed, p.uid, first))
                for p, first, n in chunk
            ]
            completions = generator.generate(requests)
            graded = iter(
                pool.grade_many(
                    (c.text, p.ground_truth, p.data_source)
                    for (p, _, _), outs in zip(chunk, completions, strict=True)
                    for c in outs
                )
            )
            for (p, first, _), outs in zip(chunk, completions, strict=True):
                for j, c in enumerate(outs):
                    result = next(graded)
                    record = SampleRecord(
                        uid=p.uid,
                        benchmark=p.benchmark.key,
                        data_source=p.data_source,
                        sample=first + j,
                        response=c.text,
                        num_tokens=c.num_tokens,
                        truncated=c.truncated,
                        correct=result.correct,
                        ground_truth=p.ground_truth,
                        grade_status=result.status.value,
                    )
                    cached.append(record)
                    f.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
                bar.update(len(outs))
            f.flush()
    bar.close()
    return cached


def regrade(out_dir: str | Path, progress: bool = True, grading: GradingConfig | None = None) -> list[SampleRecord]:
    """Grade every cached sample again with the current grader (bounded, in parallel on the
    grading pool of ``grading``) and rewrite ``samples.jsonl``."""
    records = read_samples(out_dir)
    pool = get_grading_pool(grading)
    futures = [pool.submit(r.response, r.ground_truth, r.data_source) for r in records]
    for r, future in zip(tqdm(records, desc="eval/regrade", unit="sample", disable=not progress), futures, strict=True):
        result = future.result()
        r.correct, r.grade_status = result.correct, result.status.value
    path = Path(out_dir) / SAMPLES_FILE
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return records
