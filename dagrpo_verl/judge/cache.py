"""Score cache keyed by (template version, judge model, question, response, reference).

Identical requests are judged once: the in-memory map serves repeats within a process, and
an optional SQLite file under ``cache_dir`` serves them across restarts and processes
(SQLite's own locking makes concurrent writers from several reward workers safe). Only real
scores are stored; a missing score (NaN) is not cached, so the item is retried next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading

__all__ = ["JudgeCache", "cache_key"]

_DB_NAME = "judge_scores.sqlite"


def cache_key(template_version: str, model: str, question: str, response: str, reference: str, extra: str = "") -> str:
    """SHA-256 over the length-safe JSON encoding of the key fields (``extra`` holds settings
    that change the prompt, such as the truncation length)."""
    payload = json.dumps([template_version, model, question, response, reference, extra], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgeCache:
    """In-memory score map, backed by ``<cache_dir>/judge_scores.sqlite`` when ``cache_dir`` is set."""

    def __init__(self, cache_dir: str = ""):
        self._memory: dict[str, float] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)
            self._db = sqlite3.connect(os.path.join(cache_dir, _DB_NAME), timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # no fsync per score; a crash loses only recent ones
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> float | None:
        """The cached score, or None."""
        with self._lock:
            if key in self._memory:
                return self._memory[key]
            if self._db is None:
                return None
            row = self._db.execute("SELECT score FROM scores WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            self._memory[key] = float(row[0])
            return self._memory[key]

    def put(self, key: str, score: float) -> None:
        """Store a score (memory, and disk when enabled)."""
        with self._lock:
            self._memory[key] = score
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO scores (key, score) VALUES (?, ?)", (key, score))
                self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)
