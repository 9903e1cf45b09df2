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
"""verl's ``file`` metrics logger without losing earlier steps when a run restarts.

verl 0.9.1's ``FileLogger`` (``verl/utils/tracking.py``, ``trainer.logger`` containing
``file``) opens its path with mode ``"wb"`` when the trainer's ``fit`` starts. With a pinned
path (``VERL_FILE_LOGGER_PATH``, as the recipes set it) a restart with
``trainer.resume_mode=auto`` therefore erases every step logged before it. verl has no
registry for logger backends, so :func:`keep_metrics_file` swaps the class in
``verl.utils.tracking`` for the duration of ``fit`` (in the process that runs it, the DaGRPO
task runners of :mod:`dagrpo_verl.integration.trainer`), as
:func:`dagrpo_verl.integration.legacy_trainer.legacy_advantage_hook` does for the advantage function:

* a run that resumes from a checkpoint **appends** to the file (steps after the checkpoint
  that are run again appear twice, the later line last; readers such as
  :mod:`dagrpo_verl.eval.plot` keep the last value per step);
* a fresh start whose file already holds metrics moves that file aside to
  ``<path>.previous-<YYYYmmdd-HHMMSS>`` first: nothing is erased.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from verl.utils import tracking

__all__ = ["file_logger_path", "keep_metrics_file", "resume_step"]

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))


def file_logger_path(project_name: str, experiment_name: str) -> str:
    """The path verl's ``FileLogger`` writes to."""
    # mirrors verl 0.9.1 verl.utils.tracking:FileLogger.__init__ (path choice)
    path = os.getenv("VERL_FILE_LOGGER_PATH", None)
    if path is None:
        root = os.path.expanduser(os.getenv("VERL_FILE_LOGGER_ROOT", "."))
        path = os.path.join(root, project_name, f"{experiment_name}.jsonl")
    return path


def resume_step(trainer_config: Any) -> int | None:
    """The global step verl's trainer will resume from, or None for a fresh start.

    Args:
        trainer_config: verl's ``trainer`` config (``resume_mode``, ``default_local_dir``, ``resume_from_path``).
    """
    # mirrors verl 0.9.1 verl.trainer.ppo.v1.trainer_base:PPOTrainer._load_checkpoint (folder choice;
    # the legacy RayPPOTrainer._load_checkpoint chooses the same folder)
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

    mode = trainer_config.get("resume_mode", "auto")
    if mode == "disable":
        return None
    if mode == "auto":
        folder = find_latest_ckpt_path(os.path.abspath(str(trainer_config.get("default_local_dir"))))
    elif mode == "resume_path":
        folder = str(trainer_config.get("resume_from_path"))
    else:
        return None  # verl logs the unknown mode and starts fresh
    if folder is None or "global_step_" not in folder:
        return None
    return int(folder.split("global_step_")[-1])


def _drop_partial_last_line(path: str) -> None:
    """Cut an unfinished last line (a run killed while writing it) so that appended lines stay valid JSON lines."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        chunk, end = 1 << 16, size
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            end = start
        f.truncate(0)


def _unused(path: str) -> str:
    """``path``, or ``path-1``, ``path-2``, ... whichever does not exist yet."""
    candidate, n = path, 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


class _AppendingFileLogger(tracking.FileLogger):
    """verl's ``FileLogger`` opening its file for appending instead of truncating it."""

    def __init__(self, project_name: str, experiment_name: str):
        # mirrors verl 0.9.1 verl.utils.tracking:FileLogger.__init__ with mode "ab" instead of "wb"
        self.project_name = project_name
        self.experiment_name = experiment_name
        self.filepath = file_logger_path(project_name, experiment_name)
        os.makedirs(os.path.dirname(os.path.abspath(self.filepath)), exist_ok=True)
        if os.path.exists(self.filepath):
            _drop_partial_last_line(self.filepath)
        print(f"Appending to file logger at {os.path.abspath(self.filepath)}")
        self.fp = open(self.filepath, "ab", buffering=0)


@contextlib.contextmanager
def keep_metrics_file(config: Any) -> Iterator[None]:
    """Within the block (verl's ``fit``), verl's ``file`` logger never erases earlier metrics.

    Resuming from a checkpoint (:func:`resume_step`): the logger appends. Fresh start with a
    non-empty file: the file is moved aside to ``<path>.previous-<timestamp>`` before verl
    opens it. Without ``file`` in ``trainer.logger`` nothing changes.

    Args:
        config: the full trainer config (``trainer.logger``, ``trainer.project_name``, ...).
    """
    backends = config.trainer.get("logger", []) or []
    backends = [backends] if isinstance(backends, str) else list(backends)
    if "file" not in backends:
        yield
        return
    path = file_logger_path(config.trainer.project_name, config.trainer.experiment_name)
    step = resume_step(config.trainer)
    if step is None:
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            kept = _unused(f"{path}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
            os.rename(path, kept)
            logger.warning(f"fresh start: the earlier metrics in {path} were moved to {kept}")
        yield
        return
    logger.info(f"resuming from step {step}: appending metrics to {path}")
    original = tracking.FileLogger
    tracking.FileLogger = _AppendingFileLogger
    try:
        yield
    finally:
        tracking.FileLogger = original
