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
"""A resumed run compares its settings with those saved in its checkpoint (``dagrpo_verl.integration.resume``).

Real: the composed ``dagrpo_trainer`` config (hydra overrides as a user writes them), verl's
checkpoint-folder layout. The whole kill-and-resume run through verl's trainer is
``tests/test_faults_training_on_cpu.py``.
"""

from __future__ import annotations

import json
import logging

from dagrpo_verl.integration.resume import SETTINGS_FILE, check_settings, run_settings, save_settings
from dagrpo_verl.main import compose_config

JUDGE = "reward.custom_reward_function.reward_kwargs.judge"


def _config(tmp_path, *overrides):
    return compose_config([f"trainer.default_local_dir={tmp_path / 'ckpt'}", *overrides])


def test_same_settings_pass_with_an_info_line(tmp_path, caplog):
    config = _config(tmp_path, "algorithm.dagrpo.delta=2.5")
    path = save_settings(config, 4)
    assert path == str(tmp_path / "ckpt" / "global_step_4" / SETTINGS_FILE)
    saved = json.loads(open(path).read())
    assert saved["algorithm.dagrpo.delta"] == 2.5 and saved["algorithm.adv_estimator"] == "dagrpo"
    assert saved["actor_rollout_ref.actor.policy_loss.off_policy_gamma"] == 0.1
    with caplog.at_level(logging.INFO, logger="dagrpo_verl.integration.resume"):
        assert check_settings(_config(tmp_path, "algorithm.dagrpo.delta=2.5"), 4) == {}
    assert f"resuming at step 4: the {len(saved)} run settings equal the checkpoint's" in caplog.text


def test_a_changed_setting_is_named_with_both_values(tmp_path, caplog):
    original = _config(tmp_path, "data.train_batch_size=128")
    save_settings(original, 2)
    resumed = _config(tmp_path, "algorithm.dagrpo.delta=2.0", "data.train_batch_size=64", f"+{JUDGE}.model=other")
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.resume"):
        changed = check_settings(resumed, 2)
    assert changed == {
        "algorithm.dagrpo.delta": (3.0, 2.0),
        "data.train_batch_size": (128, 64),  # the dataloader position counts batches: a different run
        f"{JUDGE}.model": (None, "other"),
    }
    assert "algorithm.dagrpo.delta: 3.0 -> 2.0" in caplog.text and f"{JUDGE}.model: None -> 'other'" in caplog.text


def test_a_fresh_start_checks_nothing_and_a_foreign_checkpoint_is_reported(tmp_path, caplog):
    config = _config(tmp_path)
    assert check_settings(config, 0) == {}
    (tmp_path / "ckpt" / "global_step_3").mkdir(parents=True)  # written by plain verl: no settings file
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.resume"):
        assert check_settings(config, 3) == {}
    assert "cannot read" in caplog.text and "not compared" in caplog.text


def test_resume_path_is_the_folder_compared(tmp_path):
    save_settings(_config(tmp_path), 6)
    elsewhere = _config(
        tmp_path / "other",
        "trainer.resume_mode=resume_path",
        f"trainer.resume_from_path={tmp_path / 'ckpt' / 'global_step_6'}",
        "algorithm.dagrpo.on_missing_score=mask",
    )
    assert check_settings(elsewhere, 6) == {"algorithm.dagrpo.on_missing_score": ("keep", "mask")}


def test_credentials_in_the_judge_url_are_never_written(tmp_path):
    config = _config(tmp_path, f"{JUDGE}.backend=openai", f"+{JUDGE}.base_url=https://user:s3cret@judge.example/v1")
    save_settings(config, 1)
    text = (tmp_path / "ckpt" / "global_step_1" / SETTINGS_FILE).read_text()
    assert "s3cret" not in text and "judge.example" in text
    assert run_settings(config)[f"{JUDGE}.base_url"] == json.loads(text)[f"{JUDGE}.base_url"]
