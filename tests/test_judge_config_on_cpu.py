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
"""Judge settings: every bad value is rejected with the full verl key and the fix."""

import pytest
from omegaconf import OmegaConf

from dagrpo_verl.judge import JudgeConfig, judge_config_from
from dagrpo_verl.judge.config import CONFIG_PREFIX
from dagrpo_verl.judge.openai_client import chat_completions_url


def test_defaults_are_the_rule_scorer():
    config = judge_config_from(None)
    assert config == JudgeConfig() and config.backend == "rule"


@pytest.mark.parametrize("key", ["judge_anchors", "max_score"])
def test_anchor_keys_moved_to_the_anchor_block(key):
    """One home: an anchor's score is decided by the anchor mixer (algorithm.dagrpo.anchor.*)."""
    with pytest.raises(ValueError, match=rf"{CONFIG_PREFIX}\.{key} moved to algorithm\.dagrpo\.anchor\.{key}"):
        judge_config_from({key: True})


def test_dictconfig_from_hydra_is_accepted():
    node = OmegaConf.create({"backend": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m", "timeout_s": 30})
    config = judge_config_from(node)
    assert config.backend == "openai" and config.timeout_s == 30


@pytest.mark.parametrize(
    "values, key",
    [
        ({"backend": "gpt"}, "backend"),
        ({"backend": "openai", "model": "m"}, "base_url"),
        ({"backend": "openai", "base_url": "http://h/v1"}, "model"),
        ({"backend": "hf"}, "model"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 2.5}, "max_concurrency"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"deadline_s": float("inf")}, "deadline_s"),
        ({"max_response_chars": 10}, "max_response_chars"),
        ({"temperature": -1}, "temperature"),
        ({"api_key_env": "DAGRPO_SURELY_UNSET_VARIABLE"}, "api_key_env"),
        ({"timeout": 3}, "timeout"),
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"cache_max_entries": 0}, "cache_max_entries"),
        ({"max_reply_bytes": 100}, "max_reply_bytes"),
        ({"max_reference_chars": 10}, "max_reference_chars"),
        ({"max_question_chars": True}, "max_question_chars"),
        ({"base_url": 8000}, "base_url"),
        ({"backend": "openai", "model": "m", "base_url": "http://h:notaport/v1"}, "base_url"),
    ],
)
def test_bad_values_name_the_key(values, key):
    with pytest.raises(ValueError, match=rf"{CONFIG_PREFIX}\.{key}"):
        judge_config_from(values)


def test_not_a_mapping_is_rejected():
    with pytest.raises(ValueError, match="must be a mapping"):
        judge_config_from("openai")


def test_hf_model_must_be_a_directory(tmp_path):
    from dagrpo_verl.judge.hf import HFScorer

    with pytest.raises(ValueError, match=rf"{CONFIG_PREFIX}\.model"):
        HFScorer(judge_config_from({"backend": "hf", "model": str(tmp_path / "absent")}))


@pytest.mark.parametrize(
    "base_url, url",
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/chat/completions"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1/chat/completions"),
        ("10.0.0.2:30000", "http://10.0.0.2:30000/v1/chat/completions"),
        ("https://api.example.com/v1", "https://api.example.com/v1/chat/completions"),
        (
            "https://r.openai.azure.com/openai/deployments/judge?api-version=2024-06-01",
            "https://r.openai.azure.com/openai/deployments/judge/chat/completions?api-version=2024-06-01",
        ),
        ("http://user:pw@127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1/chat/completions"),
        ("http://[::1]:8000", "http://[::1]:8000/v1/chat/completions"),
    ],
)
def test_chat_completions_url(base_url, url):
    assert chat_completions_url(base_url) == url


def test_bad_base_url_names_the_key():
    with pytest.raises(ValueError, match=rf"{CONFIG_PREFIX}\.base_url"):
        chat_completions_url("ftp://host/v1")
