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
"""``python -m dagrpo_verl.judge``: scores a JSONL/parquet file and writes the scores.

The judge LLM is stood in for by ``LocalJudgeServer`` (local OpenAI-compatible server on
127.0.0.1; the test's rule gives 9 to responses containing 42 and an unparseable answer
otherwise, so both a score and a missing score go through the writer).
"""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from dagrpo_verl.judge.__main__ import main
from dagrpo_verl.judge.testing import LocalJudgeServer, Reply, verdict_line

ROWS = [
    {"question": "6 * 7?", "response": "It is \\boxed{42}", "reference": "\\boxed{42}", "id": 1},
    {"question": "6 * 7?", "response": "It is \\boxed{48}", "reference": "\\boxed{42}", "id": 2},
]


def rule(request):
    return Reply(content=verdict_line(9) if "42}" in request.candidate else "no idea")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_cli_scores_a_file(tmp_path, suffix, capsys):
    source = tmp_path / f"items{suffix}"
    target = tmp_path / f"scored{suffix}"
    if suffix == ".jsonl":
        source.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    else:
        pd.DataFrame(ROWS).to_parquet(source)
    with LocalJudgeServer(rule) as server:
        code = main(
            [
                "--input",
                str(source),
                "--output",
                str(target),
                "--backend",
                "openai",
                "--base-url",
                server.url,
                "--model",
                "stand-in",
                "--max-concurrency",
                "2",
                "--no-progress",
            ]
        )
    assert code == 0
    if suffix == ".jsonl":
        out = [json.loads(line) for line in target.read_text().splitlines()]
        assert [row["judge_score"] for row in out] == [9.0, None]  # missing is null in JSON
        assert [row["id"] for row in out] == [1, 2]
    else:
        out = pd.read_parquet(target)
        assert out["judge_score"].iloc[0] == 9.0 and math.isnan(out["judge_score"].iloc[1])
    metrics = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert metrics["judge/calls"] == 3 and metrics["judge/failures"] == 1 and metrics["judge/parse_errors"] == 2


def test_cli_rejects_missing_columns_and_bad_settings(tmp_path):
    source = tmp_path / "items.jsonl"
    source.write_text(json.dumps({"prompt": "q", "answer": "a"}) + "\n")
    with pytest.raises(SystemExit, match="missing column"):
        main(["--input", str(source), "--output", str(tmp_path / "o.jsonl")])
    with pytest.raises(SystemExit, match=r"judge\.max_concurrency"):
        main(["--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--max-concurrency", "0"])
    with pytest.raises(SystemExit, match="--output"):
        main(["--input", str(source), "--output", str(tmp_path / "o.csv")])


def test_cli_runs_as_a_module_with_the_rule_judge(tmp_path):
    source, target = tmp_path / "items.jsonl", tmp_path / "scored.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    done = subprocess.run(
        [sys.executable, "-m", "dagrpo_verl.judge", "--input", str(source), "--output", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    scores = [json.loads(line)["judge_score"] for line in target.read_text().splitlines()]
    assert scores == [10.0, 1.0]  # rule judge: right answer and all reference numbers vs wrong answer
    assert "judge: 100%" in done.stderr  # the progress bar
