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
"""``python -m dagrpo_verl.data.sft``: training data -> verl's SFT layout, every row validated.

Real parts only: files written here, the module's CLI, the embedded tiny Qwen2 tokenizer, and
verl 0.9.1's own ``MultiTurnSFTDataset`` reading the output back (what ``verl.trainer.sft_trainer``
trains on).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dagrpo_verl.cpu.models import IM_END
from dagrpo_verl.data.prepare import DataValidationError, write_rows
from dagrpo_verl.data.prepare import convert_rows as prepare_rows
from dagrpo_verl.data.sft import MESSAGES_KEY, TOO_LONG, convert_rows, main
from dagrpo_verl.fields import ANCHOR_TEXT

SYSTEM = {"role": "system", "content": "Think step by step."}


def _row(i: int, **changes) -> dict:
    """A row in the OpenR1 layout (expert answer in ``target``), as ``prepare`` reads it."""
    row = {
        "data_source": "openr1",
        "prompt": [SYSTEM, {"role": "user", "content": f"What is {i} + 1?"}],
        "target": [{"role": "assistant", "content": f"{i} + 1 = {i + 1}, so \\boxed{{{i + 1}}}."}],
        "reward_model": {"ground_truth": str(i + 1), "style": "rule"},
        "extra_info": {"index": 100 + i, "split": "train"},
    }
    row.update(changes)
    return row


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from dagrpo_verl.cpu.models import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def prepared(tmp_path):
    """What ``python -m dagrpo_verl.data.prepare`` writes (the recipes' TRAIN_FILE)."""
    path = tmp_path / "train.parquet"
    write_rows(prepare_rows([_row(i) for i in range(4)]).rows, path)
    return path


def test_prepared_rows_become_conversations_verl_trains_on(prepared, tmp_path, model_dir):
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    out = tmp_path / "sft.parquet"
    assert (
        main(["--input", str(prepared), "--output", str(out), "--tokenizer", str(model_dir), "--max-length", "128"])
        == 0
    )
    written = pd.read_parquet(out)
    assert list(written.columns) == [MESSAGES_KEY, "data_source", "extra_info"]
    assert [info["index"] for info in written["extra_info"]] == [100, 101, 102, 103]
    anchors = [info[ANCHOR_TEXT] for info in pd.read_parquet(prepared)["extra_info"]]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = OmegaConf.create({"max_length": 128, "truncation": "error", "pad_mode": "right"})
    dataset = MultiTurnSFTDataset(parquet_files=str(out), tokenizer=tokenizer, config=config)
    for i, anchor in enumerate(anchors):
        item = dataset[i]
        trained = item["input_ids"][item["loss_mask"].bool()]
        # the loss covers exactly the expert solution and its end-of-turn, never the prompt
        assert tokenizer.decode(trained) == f"{anchor}{IM_END}\n"
        prompt = tokenizer.decode(item["input_ids"][item["attention_mask"].bool() & ~item["loss_mask"].bool()])
        assert SYSTEM["content"] in prompt and f"What is {i} + 1?" in prompt and anchor not in prompt


def test_openr1_layout_is_accepted_too(tmp_path):
    source = tmp_path / "openr1.jsonl"
    source.write_text("".join(json.dumps(_row(i)) + "\n" for i in range(2)))
    result = convert_rows(pd.read_json(source, lines=True).to_dict(orient="records"))
    assert [r[MESSAGES_KEY][-1] for r in result.rows] == [
        {"role": "assistant", "content": _row(i)["target"][0]["content"]} for i in range(2)
    ]
    assert [r[MESSAGES_KEY][:-1] for r in result.rows] == [_row(i)["prompt"] for i in range(2)]


BAD = {
    "no expert solution": (_row(1, target=None), "target", "missing_anchor"),
    "empty expert solution": (_row(2, target=""), "target", "missing_anchor"),
    "prompt ends with the assistant": (
        _row(3, prompt=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]),
        "prompt",
        "bad_prompt",
    ),
    "no ground truth": (_row(4, reward_model={"style": "rule"}), "reward_model.ground_truth", "no_ground_truth"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_rows_are_named_with_row_and_field(name):
    row, field, kind = BAD[name]
    with pytest.raises(DataValidationError) as info:
        convert_rows([_row(0), row, _row(5)])
    (error,) = info.value.errors
    assert (error.row, error.field, error.kind) == (1, field, kind)
    assert f"row 1: field '{field}'" in str(info.value) and "--on-invalid drop" in str(info.value)


def test_too_long_rows_found_by_verls_dataset_fail_or_drop(tmp_path, model_dir, capsys):
    rows = [_row(0), _row(1, target="x " * 400), _row(2), _row(3, target=None)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, report = tmp_path / "out.parquet", tmp_path / "report.json"
    args = ["--input", str(source), "--output", str(out), "--tokenizer", str(model_dir), "--max-length", "96"]

    assert main([*args, "--report", str(report)]) == 1  # fail: everything listed, nothing written
    assert not out.exists() and not list(tmp_path.glob(".out.parquet*"))
    err = capsys.readouterr().err
    assert "row 1: field 'messages': sequence_length=" in err and "is larger than self.max_length=96" in err
    assert "row 3: field 'target'" in err
    assert [(e["row"], e["kind"]) for e in json.loads(report.read_text())["errors"]] == [
        (1, TOO_LONG),
        (3, "missing_anchor"),
    ]

    assert main([*args, "--on-invalid", "drop", "--report", str(report)]) == 0
    assert "wrote 2 of 4 rows" in capsys.readouterr().out
    summary = json.loads(report.read_text())
    assert summary["dropped_by_kind"] == {TOO_LONG: 1, "missing_anchor": 1} and summary["written"] == 2
    assert [info["index"] for info in pd.read_parquet(out)["extra_info"]] == [100, 102]


def test_arguments_are_checked(tmp_path, prepared, capsys):
    with pytest.raises(SystemExit):
        main(["--input", str(prepared), "--output", str(tmp_path / "o.parquet"), "--max-length", "8"])
    assert "--tokenizer and --max-length go together" in capsys.readouterr().err
    assert main(["--input", str(prepared), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "reads parquet" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "missing.parquet"), "--output", str(tmp_path / "o.parquet")]) == 2


def test_worker_processes_find_the_same_rows(model_dir):
    from dagrpo_verl.data.sft import check_token_lengths, sft_row

    rows = [sft_row(_row(i, target="y " * (300 if i in (2, 5) else 3)), i)[0] for i in range(6)]
    here = check_token_lengths(rows, str(model_dir), 96, progress=False)
    spread = check_token_lengths(rows, str(model_dir), 96, workers=2, progress=False)
    assert [(e.row, e.kind) for e in spread] == [(e.row, e.kind) for e in here] == [(2, TOO_LONG), (5, TOO_LONG)]
