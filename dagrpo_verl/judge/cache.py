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
"""Score cache keyed by (template version, judge model, question, response, reference).

Identical requests are judged once: a bounded in-memory map (least recently used entries
dropped beyond ``cache_max_entries``) serves repeats within a process, and an optional SQLite
file under ``cache_dir`` serves them across restarts and processes (WAL mode; SQLite's own
locking makes several reward workers writing at once safe). Only real scores are stored; a
missing score (NaN) is not cached, so the item is asked again next time.

The disk store never blocks the event loop and never raises: every SQLite call runs in one
worker thread of this cache, writes are batched, and the first SQLite error (a file locked
beyond :data:`DISK_BUSY_TIMEOUT_S`, a corrupt file, a full disk, an unwritable directory)
switches the cache to memory only for the rest of the process, with one WARNING. A value read
back that is not a number in [1, 10] is ignored (a miss), whoever wrote it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence

__all__ = ["DISK_BUSY_TIMEOUT_S", "JudgeCache", "cache_key", "valid_score"]

logger = logging.getLogger(__name__)

_DB_NAME = "judge_scores.sqlite"
#: Longest wait for a lock held by another process before the disk store is given up.
DISK_BUSY_TIMEOUT_S = 2.0
#: Keys per ``SELECT ... IN (...)`` (below SQLite's default limit of host parameters).
_LOOKUP_CHUNK = 500
MIN_SCORE, MAX_SCORE = 1.0, 10.0


def cache_key(template_version: str, model: str, question: str, response: str, reference: str, extra: str = "") -> str:
    """SHA-256 over the length-safe JSON encoding of the key fields (``extra`` holds settings
    that change the prompt, such as the truncation lengths). Any ``str`` works, lone
    surrogates included (encoded with ``surrogatepass``: distinct texts keep distinct keys)."""
    payload = json.dumps([template_version, model, question, response, reference, extra], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def valid_score(value: object) -> float | None:
    """``value`` as a float when it is a real number in [1, 10], else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and MIN_SCORE <= value <= MAX_SCORE else None


class JudgeCache:
    """Bounded in-memory score map, backed by ``<cache_dir>/judge_scores.sqlite`` when set.

    ``get_many``/``flush`` are coroutines (the disk part runs in the cache's own thread);
    ``get_memory``/``put`` are non-blocking and safe from any thread.
    """

    def __init__(self, cache_dir: str = "", max_entries: int = 100_000):
        self.max_entries = max_entries
        self._memory: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._cache_dir = cache_dir
        self._disk_ok = bool(cache_dir)
        self._db: sqlite3.Connection | None = None  # opened lazily, in the worker thread only
        self._pending: list[tuple[str, float]] = []
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-cache")
            if cache_dir
            else None
        )
        self._flush_scheduled = False

    @property
    def disk_enabled(self) -> bool:
        """True while the SQLite store is in use (False without ``cache_dir`` or after an error)."""
        return self._disk_ok

    # ---- memory -------------------------------------------------------------------------
    def get_memory(self, key: str) -> float | None:
        with self._lock:
            value = self._memory.get(key)
            if value is not None:
                self._memory.move_to_end(key)
            return value

    def _remember(self, key: str, score: float) -> None:
        with self._lock:
            self._memory[key] = score
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_entries:
                self._memory.popitem(last=False)

    def put(self, key: str, score: float) -> None:
        """Store a score (memory at once; the disk write is queued to the cache thread).
        Values outside [1, 10] are not stored."""
        score = valid_score(score)
        if score is None:
            return
        self._remember(key, score)
        if self._disk_ok and self._executor is not None:
            with self._lock:
                self._pending.append((key, score))
                if not self._flush_scheduled:
                    try:
                        self._executor.submit(self._write_pending)
                        self._flush_scheduled = True
                    except RuntimeError:  # executor shut down (interpreter exit)
                        self._pending.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)

    # ---- disk (cache thread only) -------------------------------------------------------
    async def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        """Cached scores of ``keys`` (absent keys are missing from the result)."""
        found: dict[str, float] = {}
        unknown = []
        for key in keys:
            value = self.get_memory(key)
            if value is None:
                unknown.append(key)
            else:
                found[key] = value
        if unknown and self._disk_ok and self._executor is not None:
            loop = asyncio.get_running_loop()
            try:
                from_disk = await loop.run_in_executor(self._executor, self._read, tuple(dict.fromkeys(unknown)))
            except RuntimeError:  # executor shut down (interpreter exit)
                from_disk = {}
            for key, value in from_disk.items():
                self._remember(key, value)
            found.update(from_disk)
        return found

    async def flush(self) -> None:
        """Wait until the queued disk writes are done (or given up)."""
        if self._executor is None or not self._disk_ok:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._write_pending)
        except RuntimeError:
            pass

    def _disable(self, error: BaseException) -> None:
        if self._disk_ok:
            self._disk_ok = False
            logger.warning(
                "judge cache: the SQLite store in %s failed (%s: %s); scores are cached in memory only from now on "
                "(missing scores are unaffected). Check the directory, or set judge.cache_dir='' to silence this.",
                self._cache_dir,
                type(error).__name__,
                str(error)[:200],
            )
        with self._lock:
            self._pending.clear()
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None and self._disk_ok:
            try:
                os.makedirs(self._cache_dir, exist_ok=True)
                db = sqlite3.connect(os.path.join(self._cache_dir, _DB_NAME), timeout=DISK_BUSY_TIMEOUT_S)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")  # no fsync per batch; a crash loses only recent ones
                    db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL NOT NULL)")
                    db.commit()
                except BaseException:
                    db.close()
                    raise
                self._db = db
            except (sqlite3.Error, OSError, ValueError) as error:
                self._disable(error)
        return self._db

    def _read(self, keys: Iterable[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        db = self._connection()
        if db is None:
            return found
        keys = list(keys)
        try:
            for begin in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[begin : begin + _LOOKUP_CHUNK]
                rows = db.execute(
                    f"SELECT key, score FROM scores WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                for key, value in rows:
                    score = valid_score(value)
                    if isinstance(key, str) and score is not None:
                        found[key] = score
        except (sqlite3.Error, OverflowError, ValueError) as error:
            self._disable(error)
        return found

    def _write_pending(self) -> None:
        """Write what is queued, one transaction per batch, until the queue is empty."""
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._flush_scheduled = False
                    return
            db = self._connection()
            if db is None:
                continue  # disabled: the queue was cleared, the next round ends the loop
            try:
                with db:
                    db.executemany("INSERT OR REPLACE INTO scores (key, score) VALUES (?, ?)", batch)
            except (sqlite3.Error, OverflowError, ValueError) as error:
                self._disable(error)
