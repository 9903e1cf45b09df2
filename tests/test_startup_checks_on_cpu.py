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
"""Start-up checks for a GPU run: the model's context holds prompt + response, and Dr.GRPO's normaliser.

Real: the composed ``dagrpo_trainer`` config, ``config.json`` files in a model directory and in a
Hugging Face cache in the hub's layout (``huggingface_hub.try_to_load_from_cache``), verl's
``ActorConfig`` built from the config.
"""

from __future__ import annotations

import json
import logging

import pytest
from omegaconf import OmegaConf
from verl.utils.config import omega_conf_to_dataclass

from dagrpo_verl.integration.validation import DaGRPOConfigError, model_context_length, validate_dagrpo_config
from dagrpo_verl.main import compose_config

PAPER_LENGTHS = ["data.max_prompt_length=1024", "data.max_response_length=8192"]


def _model_dir(root, max_position_embeddings):
    root.mkdir(parents=True)
    (root / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "max_position_embeddings": max_position_embeddings})
    )
    return root


def _hub_cache(root, repo_id, max_position_embeddings):
    """A Hugging Face cache holding only ``config.json`` of ``repo_id`` (the hub's cache layout)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"max_position_embeddings": max_position_embeddings}))
    return root


def test_a_4k_model_with_8k_responses_is_refused(tmp_path):
    model = _model_dir(tmp_path / "qwen2.5-math-7b", 4096)
    config = compose_config([*PAPER_LENGTHS, f"actor_rollout_ref.model.path={model}"])
    with pytest.raises(DaGRPOConfigError) as error:
        validate_dagrpo_config(config)
    message = str(error.value)
    assert "4096" in message and "9216" in message and "data.max_response_length" in message
    assert "Elliott/Qwen2.5-Math-7B-16k-think" in message


def test_a_16k_model_passes(tmp_path):
    model = _model_dir(tmp_path / "qwen2.5-math-7b-16k", 16384)
    assert validate_dagrpo_config(compose_config([*PAPER_LENGTHS, f"actor_rollout_ref.model.path={model}"]))


def test_a_short_max_model_len_is_refused(tmp_path):
    model = _model_dir(tmp_path / "m", 16384)
    config = compose_config(
        [*PAPER_LENGTHS, f"actor_rollout_ref.model.path={model}", "actor_rollout_ref.rollout.max_model_len=4096"]
    )
    with pytest.raises(DaGRPOConfigError, match="actor_rollout_ref.rollout.max_model_len=9216"):
        validate_dagrpo_config(config)


def test_a_hub_id_is_read_from_the_huggingface_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(_hub_cache(tmp_path, "Qwen/Qwen2.5-Math-7B", 4096))
    )
    assert model_context_length("Qwen/Qwen2.5-Math-7B")[0] == 4096
    with pytest.raises(DaGRPOConfigError, match="4096"):
        validate_dagrpo_config(compose_config([*PAPER_LENGTHS, "actor_rollout_ref.model.path=Qwen/Qwen2.5-Math-7B"]))


def test_an_unreadable_model_config_warns_unless_max_model_len_is_set(tmp_path, monkeypatch, caplog):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    overrides = [*PAPER_LENGTHS, "actor_rollout_ref.model.path=Org/not-downloaded"]
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.validation"):
        validate_dagrpo_config(compose_config(overrides))
    assert "actor_rollout_ref.rollout.max_model_len=9216" in caplog.text and "Org/not-downloaded" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.validation"):
        validate_dagrpo_config(compose_config([*overrides, "actor_rollout_ref.rollout.max_model_len=9216"]))
    assert "context" not in caplog.text


@pytest.mark.parametrize("bad", ['{"max_position_embeddings": "4096"}', "[1, 2]", "{not json", '{"vocab_size": 3}'])
def test_odd_config_files_are_reported_not_raised(tmp_path, bad):
    (tmp_path / "config.json").write_text(bad)
    length, reason = model_context_length(str(tmp_path))
    assert length is None and "config.json" in reason


def test_the_default_normaliser_is_the_generation_budget():
    config = compose_config(["data.max_response_length=8192", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2"])
    assert omega_conf_to_dataclass(config.actor_rollout_ref.actor).loss_scale_factor == 8192


def test_a_length_varying_normaliser_warns_for_dagrpo(caplog):
    config = compose_config(["actor_rollout_ref.actor.loss_scale_factor=null"])
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.validation"):
        validate_dagrpo_config(config)
    assert "actor_rollout_ref.actor.loss_scale_factor" in caplog.text and "padded width" in caplog.text
    caplog.clear()
    OmegaConf.update(config, "actor_rollout_ref.actor.loss_agg_mode", "token-mean")
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.validation"):
        validate_dagrpo_config(config)
    assert "padded width" not in caplog.text
    caplog.clear()
    grpo = compose_config(
        [
            "actor_rollout_ref.actor.loss_scale_factor=null",
            "algorithm.adv_estimator=grpo",
            "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla",
            "algorithm.dagrpo.anchor.enable=false",
        ]
    )
    with caplog.at_level(logging.WARNING, logger="dagrpo_verl.integration.validation"):
        validate_dagrpo_config(grpo)
    assert "padded width" not in caplog.text  # only DaGRPO runs are warned
