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
"""Restarting a run never erases verl's ``file`` metrics (``dagrpo_verl.integration.metrics_file``).

Real: verl's ``Tracking`` with its ``file`` backend (``FileLogger``), verl's checkpoint tracker
lookup (``find_latest_ckpt_path``) on a checkpoint directory in verl's layout, the composed
``dagrpo_trainer`` config. A "run" here is what the trainer's ``fit`` does with the metrics
file: build ``Tracking`` and log steps.
"""

from __future__ import annotations

import json
import os

import pytest
from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path, get_checkpoint_tracker_filename
from verl.utils.tracking import Tracking

from dagrpo_verl.integration.metrics_file import keep_metrics_file, resume_step
from dagrpo_verl.main import compose_config


def _config(tmp_path, *overrides):
    return compose_config(
        [
            "trainer.logger=[file]",
            "trainer.project_name=p",
            "trainer.experiment_name=e",
            f"trainer.default_local_dir={tmp_path / 'ckpt'}",
            *overrides,
        ]
    )


def _run(config, steps):
    """What verl's fit does with the file logger: build Tracking, log every step, finish."""
    tracker = Tracking(config.trainer.project_name, config.trainer.experiment_name, default_backend=["file"])
    for step in steps:
        tracker.log({"critic/score/mean": step / 10}, step=step)
    tracker.finish()


def _steps(path):
    with open(path) as f:
        return [json.loads(line)["step"] for line in f]


def _checkpoint(tmp_path, step):
    """A checkpoint directory in verl's layout, as _save_checkpoint leaves it."""
    root = tmp_path / "ckpt"
    (root / f"global_step_{step}").mkdir(parents=True, exist_ok=True)
    with open(get_checkpoint_tracker_filename(str(root)), "w") as f:
        f.write(str(step))


@pytest.fixture
def metrics_path(tmp_path, monkeypatch):
    path = tmp_path / "out" / "verl_metrics.jsonl"
    path.parent.mkdir()
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(path))
    return path


def test_verl_alone_erases_the_steps_before_a_restart(tmp_path, metrics_path):
    """The behaviour being fixed: a second Tracking on the pinned path truncates it."""
    config = _config(tmp_path)
    _run(config, [1, 2, 3])
    _checkpoint(tmp_path, 2)
    _run(config, [3, 4])
    assert _steps(metrics_path) == [3, 4]


def test_a_resumed_run_appends(tmp_path, metrics_path):
    config = _config(tmp_path)
    with keep_metrics_file(config):
        _run(config, [1, 2, 3])
    _checkpoint(tmp_path, 2)
    with keep_metrics_file(config):
        _run(config, [3, 4])  # resumes after step 2: step 3 runs again
    assert _steps(metrics_path) == [1, 2, 3, 3, 4]
    assert not list(metrics_path.parent.glob("*.previous-*"))
    # verl's own logger is back after the block
    _run(config, [9])
    assert _steps(metrics_path) == [9]


def test_a_fresh_start_moves_earlier_metrics_aside(tmp_path, metrics_path):
    config = _config(tmp_path)
    _run(config, [1, 2, 3])
    for _ in range(2):  # twice within the same second: two distinct kept files
        with keep_metrics_file(config):
            _run(config, [1])
    kept = sorted(metrics_path.parent.glob("verl_metrics.jsonl.previous-*"))
    assert [_steps(p) for p in kept] == [[1, 2, 3], [1]]
    assert _steps(metrics_path) == [1]


def test_a_line_cut_by_a_crash_is_dropped_before_appending(tmp_path, metrics_path):
    config = _config(tmp_path)
    _run(config, [1, 2])
    with open(metrics_path, "ab") as f:
        f.write(b'{"step": 3, "data": {"critic/sc')  # the process died while writing step 3
    _checkpoint(tmp_path, 2)
    with keep_metrics_file(config):
        _run(config, [3])
    assert _steps(metrics_path) == [1, 2, 3]


def test_without_the_file_backend_nothing_changes(tmp_path, metrics_path):
    metrics_path.write_text("not verl's\n")
    with keep_metrics_file(_config(tmp_path, "trainer.logger=[console]")):
        pass
    assert metrics_path.read_text() == "not verl's\n"


def test_resume_step_follows_verl(tmp_path):
    config = _config(tmp_path)
    assert resume_step(config.trainer) is None  # no checkpoint yet
    _checkpoint(tmp_path, 7)
    assert find_latest_ckpt_path(str(tmp_path / "ckpt")).endswith("global_step_7")
    assert resume_step(config.trainer) == 7
    assert resume_step(_config(tmp_path, "trainer.resume_mode=disable").trainer) is None
    other = os.path.join(str(tmp_path), "elsewhere", "global_step_3")
    explicit = _config(tmp_path, "trainer.resume_mode=resume_path", f"trainer.resume_from_path={other}")
    assert resume_step(explicit.trainer) == 3
