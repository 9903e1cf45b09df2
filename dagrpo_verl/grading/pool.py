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
"""Grading with a hard wall-clock bound, from any thread, event loop or Ray actor.

math-verify's own timeouts use ``signal.alarm``: they work only in a process's main thread,
and even there a computation stuck inside C (``10^{10^{10}}`` is one big-integer power) never
returns to Python to see the alarm. verl runs reward functions in Ray actors' event-loop
threads, so grading there is unbounded. Here every grade runs in a small pool of grading
processes:

* each process (``python -c ...``, a plain subprocess: no ``multiprocessing``, so user scripts
  need no ``if __name__ == "__main__"`` guard and nothing of the parent is pickled) grades
  one request at a time in its main thread, under its own deadline (a SIGALRM timer at 80 %
  of ``timeout_s``) and an address-space limit (``memory_mb``);
* the parent waits at most ``timeout_s`` for the answer; past that it SIGKILLs the process and
  starts a replacement at once; a process that dies (killed, out of memory) is replaced too;
* a timeout or a failure scores "not correct" and is reported in :class:`GradeResult` and
  counted in :meth:`GradingPool.stats`;
* the processes die with their parent (``PR_SET_PDEATHSIG`` on Linux, and end on EOF of their
  stdin elsewhere), and :func:`close_grading_pools` (run at exit) kills them.

Each pool has ``workers`` threads, each owning one grading process; callers queue on them.
:meth:`GradingPool.grade` blocks the calling thread; :meth:`GradingPool.agrade` awaits without
blocking the event loop; :meth:`GradingPool.grade_many` grades a list in parallel.

Bound of one call with nothing queued before it: ``timeout_s`` plus, when the previous
request on that process was killed, the rest of a replacement's start-up (about 2 s;
at most ``START_TIMEOUT_S``). Settings come from ``reward.custom_reward_function.reward_kwargs.grading``
(:class:`GradingConfig`).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_PREFIX",
    "GraderStartError",
    "GradeResult",
    "GradeStatus",
    "GradingConfig",
    "GradingConfigError",
    "GradingPool",
    "close_grading_pools",
    "get_grading_pool",
    "grading_config_from",
    "utf8_safe",
]

logger = logging.getLogger(__name__)

#: Where the settings live in a verl config.
CONFIG_PREFIX = "reward.custom_reward_function.reward_kwargs.grading"

#: Longest wait for a new grading process to import math-verify and answer a first request.
START_TIMEOUT_S = 120.0

#: Fraction of ``timeout_s`` after which a grading process gives up by itself (no restart needed).
_SOFT_DEADLINE_FRACTION = 0.8

#: Most text sent to a grading process for one side (response or ground truth); the grader
#: itself reads at most :data:`dagrpo_verl.grading.MAX_GRADED_CHARS` of the response.
_MAX_SENT_CHARS = 1 << 20


class GradingConfigError(ValueError):
    """A ``reward_kwargs.grading`` setting is invalid; the message names the key and the fix."""


class GraderStartError(RuntimeError):
    """A grading process could not start twice in a row (environment, not input): the message says why."""


@dataclass(frozen=True)
class GradingConfig:
    """``reward.custom_reward_function.reward_kwargs.grading``.

    Attributes:
        timeout_s: wall-clock bound of one grade (seconds, > 0, <= 3600). Past it the grading
            process is killed and replaced; the answer scores 0 and counts as a timeout.
        workers: grading processes per process that grades (each reward loop worker of verl has
            its own pool), 1-64. Started on first use.
        memory_mb: address-space limit of each grading process in MiB (>= 256), or 0 for none.
            A grade that needs more fails (scores 0, counted as an error).
    """

    timeout_s: float = 10.0
    workers: int = 2
    memory_mb: int = 2048

    def __post_init__(self):
        def bad(key: str, value: Any, want: str) -> GradingConfigError:
            return GradingConfigError(f"{CONFIG_PREFIX}.{key}={value!r} is invalid: {want}.")

        timeout = self.timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise bad("timeout_s", timeout, "give the grading time bound in seconds, 0 < timeout_s <= 3600")
        object.__setattr__(self, "timeout_s", float(timeout))
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 1 <= self.workers <= 64:
            raise bad("workers", self.workers, "give the number of grading processes, an integer 1-64")
        memory = self.memory_mb
        if isinstance(memory, bool) or not isinstance(memory, int) or (memory != 0 and memory < 256):
            raise bad("memory_mb", memory, "give the memory limit per grading process in MiB (>= 256), or 0 for none")


def grading_config_from(value: Any) -> GradingConfig:
    """A :class:`GradingConfig` from ``None`` (defaults), a mapping, a ``DictConfig`` or a config.

    Raises:
        GradingConfigError: unknown key or invalid value, naming ``reward_kwargs.grading.<key>``.
    """
    if value is None or isinstance(value, GradingConfig):
        return value or GradingConfig()
    if not isinstance(value, Mapping):
        from omegaconf import DictConfig, OmegaConf

        if not isinstance(value, DictConfig):
            raise GradingConfigError(
                f"{CONFIG_PREFIX} must be a mapping of settings, got {type(value).__name__}; "
                f"valid keys: {[f.name for f in fields(GradingConfig)]}."
            )
        value = OmegaConf.to_container(value, resolve=True)
    known = {f.name for f in fields(GradingConfig)}
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise GradingConfigError(
            f"Unknown key(s) {[f'{CONFIG_PREFIX}.{k}' for k in unknown]}; valid keys: {sorted(known)}."
        )
    return GradingConfig(**value)


class GradeStatus(str, Enum):
    """How a grade ended."""

    OK = "ok"  #: graded
    TIMEOUT = "timeout"  #: ran past ``timeout_s`` (scored not correct)
    ERROR = "error"  #: the grader raised or its process died (scored not correct)


@dataclass(frozen=True)
class GradeResult:
    """Outcome of one bounded grade: ``correct`` is False unless ``status`` is ``OK``."""

    correct: bool
    status: GradeStatus
    seconds: float


def utf8_safe(text: Any) -> str:
    """``text`` as a str that encodes to UTF-8: None -> "", lone surrogates (``"\\ud800"``) -> U+FFFD."""
    if text is None:
        return ""
    text = text if isinstance(text, str) else str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")  # pairs joined
    return text


def _clean_text(text: Any) -> str:
    """:func:`utf8_safe`, keeping at most the last ``_MAX_SENT_CHARS`` characters."""
    if isinstance(text, str) and len(text) > _MAX_SENT_CHARS:
        text = text[-_MAX_SENT_CHARS:]
    return utf8_safe(text)


class _GraderProcess:
    """One grading subprocess and the line protocol to it (one JSON line each way)."""

    def __init__(self, config: GradingConfig):
        env = dict(os.environ)
        env.pop("PYTHONSTARTUP", None)
        # One hash seed for every grading process: math-verify 0.9 answers some comparisons by set
        # order (0/0 == 0 under some seeds), so a random seed per process would make R depend on which
        # process graded the sample.
        env["PYTHONHASHSEED"] = "0"
        soft = max(0.05, config.timeout_s * _SOFT_DEADLINE_FRACTION)
        # The package's own root goes last on sys.path (found even when only the parent had it on its
        # path, e.g. a checkout run from its directory; shadowing nothing).
        package_root = str(Path(__file__).resolve().parents[1])
        code = (
            f"import sys; sys.path.append({package_root!r}); from dagrpo_verl.grading.pool import _serve; "
            f"_serve({os.getpid()}, {soft!r}, {config.memory_mb})"
        )
        if not sys.executable:
            raise GraderStartError("sys.executable is empty: no Python interpreter to start grading processes with.")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C of the terminal reaches the parent only; it ends us
            close_fds=True,
        )
        self.ready = False
        self._buffer = b""
        self._poll = select.poll()  # poll, not select: Ray processes hold file descriptors past FD_SETSIZE
        self._poll.register(self.proc.stdout.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)

    def read_line(self, deadline: float) -> bytes | None:
        """Next line from the process; None past ``deadline``; b"" when it has died."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(max(1, int(remaining * 1000))):
                if time.monotonic() >= deadline:
                    return None
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def send(self, payload: dict) -> bool:
        try:
            self.proc.stdin.write(json.dumps(payload).encode("ascii") + b"\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def kill(self) -> None:
        try:
            self._poll.unregister(self.proc.stdout.fileno())
        except (KeyError, ValueError, OSError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL of a direct child
            logger.error("grading process %d did not end after SIGKILL", self.proc.pid)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class GradingPool:
    """A pool of grading processes with a hard per-grade bound; see the module docstring.

    Thread-safe. Use :func:`get_grading_pool` for the shared per-process pool of a config.
    """

    def __init__(self, config: GradingConfig | None = None):
        self.config = config or GradingConfig()
        self._executor = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="dagrpo-grader")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._processes: set[_GraderProcess] = set()
        self._counts: Counter = Counter()
        self._closed = False
        self.pid = os.getpid()

    # ------------------------------------------------------------------ public API
    def submit(self, response: Any, ground_truth: Any, data_source: Any = "", require_boxed: bool = False) -> Future:
        """Schedule one grade; the future's result is a :class:`GradeResult` (it never raises
        for any input; :class:`GraderStartError` when no grading process can start)."""
        if self._closed:
            raise RuntimeError("this GradingPool is closed; get a new one with get_grading_pool().")
        return self._executor.submit(self._grade_here, response, ground_truth, data_source, bool(require_boxed))

    def grade(
        self, response: Any, ground_truth: Any, data_source: Any = "", require_boxed: bool = False
    ) -> GradeResult:
        """Grade one response, blocking the calling thread for at most the bound."""
        return self.submit(response, ground_truth, data_source, require_boxed).result()

    async def agrade(
        self, response: Any, ground_truth: Any, data_source: Any = "", require_boxed: bool = False
    ) -> GradeResult:
        """Grade one response without blocking the running event loop."""
        return await asyncio.wrap_future(self.submit(response, ground_truth, data_source, require_boxed))

    def grade_many(self, items: Iterable[tuple]) -> list[GradeResult]:
        """Grade ``(response, ground_truth, data_source[, require_boxed])`` tuples in parallel, in order."""
        futures = [self.submit(*item) for item in items]
        return [f.result() for f in futures]

    def stats(self) -> dict[str, int]:
        """Counters since the pool started: ``grade/calls``, ``grade/timeouts``, ``grade/errors``,
        ``grade/process_starts``."""
        with self._lock:
            return {f"grade/{k}": self._counts[k] for k in ("calls", "timeouts", "errors", "process_starts")}

    def process_ids(self) -> list[int]:
        """PIDs of the live grading processes (for tests and monitoring)."""
        with self._lock:
            return [p.proc.pid for p in self._processes if p.proc.poll() is None]

    def close(self) -> None:
        """Kill every grading process and stop the threads (queued grades are cancelled)."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            processes, self._processes = list(self._processes), set()
        for process in processes:
            process.kill()

    # ------------------------------------------------------------------ worker threads
    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _start_process(self) -> _GraderProcess:
        process = _GraderProcess(self.config)
        with self._lock:
            self._processes.add(process)
            self._counts["process_starts"] += 1
        if self._closed:  # closed while starting: do not leave it behind
            self._retire(process)
        return process

    def _retire(self, process: _GraderProcess) -> None:
        process.kill()
        with self._lock:
            self._processes.discard(process)

    def _ready_process(self) -> _GraderProcess:
        """This thread's grading process, started and past its start-up handshake."""
        for attempt in (1, 2):
            process = getattr(self._local, "process", None)
            if process is None or process.proc.poll() is not None:
                if process is not None:
                    self._retire(process)
                process = self._local.process = self._start_process()
            if process.ready:
                return process
            line = process.read_line(time.monotonic() + START_TIMEOUT_S)
            if line is not None and line.startswith(b'{"ready"'):
                process.ready = True
                return process
            code = process.proc.poll()
            self._retire(process)
            self._local.process = None
            if attempt == 2:
                why = (
                    f"exited with code {code}" if code is not None else f"sent no handshake in {START_TIMEOUT_S:.0f} s"
                )
                raise GraderStartError(
                    f"a grading process ({sys.executable} -c 'from dagrpo_verl.grading.pool import _serve ...') {why}, "
                    f"twice; its stderr is above. Check that math-verify imports in that interpreter and that "
                    f"{CONFIG_PREFIX}.memory_mb={self.config.memory_mb} leaves room to import it."
                )
        raise AssertionError("unreachable")

    def _grade_here(self, response: Any, ground_truth: Any, data_source: Any, require_boxed: bool) -> GradeResult:
        from dagrpo_verl.grading import answer_region

        self._count("calls")
        start = time.monotonic()
        try:
            response = _clean_text(response)
            request = {
                "response": answer_region(response, require_boxed),
                "ground_truth": _clean_text(ground_truth),
                "data_source": _clean_text(data_source),
                "require_boxed": require_boxed,
            }
        except Exception:  # noqa: BLE001 - anything a policy wrote must still give a result
            logger.exception("could not prepare a grading request")
            self._count("errors")
            return GradeResult(False, GradeStatus.ERROR, time.monotonic() - start)
        process = self._ready_process()
        start = time.monotonic()
        deadline = start + self.config.timeout_s
        line = process.read_line(deadline) if process.send(request) else b""
        elapsed = time.monotonic() - start
        if line is None:  # past the bound: kill it, and start the replacement now
            self._retire(process)
            self._local.process = self._start_process()
            self._count("timeouts")
            logger.warning("grading took longer than %.1f s: killed and replaced the grading process", elapsed)
            return GradeResult(False, GradeStatus.TIMEOUT, elapsed)
        try:
            reply = json.loads(line) if line else {}
        except ValueError:
            reply = {}
        status = reply.get("status")
        if status == "ok":
            return GradeResult(bool(reply.get("correct")), GradeStatus.OK, elapsed)
        if status == "timeout":
            self._count("timeouts")
            return GradeResult(False, GradeStatus.TIMEOUT, elapsed)
        self._count("errors")
        if status == "error":
            logger.warning("grading failed: %s", reply.get("error", "?"))
        else:  # died or garbled: replace the process
            logger.warning(
                "grading process %d died (exit code %s); replacing it", process.proc.pid, process.proc.poll()
            )
            self._retire(process)
            self._local.process = self._start_process()
        return GradeResult(False, GradeStatus.ERROR, elapsed)


_POOLS: dict[GradingConfig, GradingPool] = {}
_POOLS_LOCK = threading.Lock()


def get_grading_pool(config: GradingConfig | None = None) -> GradingPool:
    """The process-wide pool for ``config`` (default settings when None), created on first use.

    A forked child process gets its own pool (the parent's grading processes stay the parent's).
    """
    config = config or GradingConfig()
    with _POOLS_LOCK:
        pool = _POOLS.get(config)
        if pool is None or pool.pid != os.getpid() or pool._closed:
            pool = _POOLS[config] = GradingPool(config)
        return pool


def close_grading_pools() -> None:
    """Kill the grading processes of every pool this process started (also run at exit)."""
    with _POOLS_LOCK:
        pools = [p for p in _POOLS.values() if p.pid == os.getpid()]
        _POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(close_grading_pools)


# ---------------------------------------------------------------------- the grading process
class _SoftDeadline(BaseException):
    """Raised by the grading process's own timer; a BaseException, so that math-verify's
    ``except Exception`` blocks do not swallow it."""


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: SIGKILL when the parent thread ends
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _serve(parent_pid: int, soft_deadline_s: float, memory_mb: int) -> None:
    """Main loop of a grading process: one JSON request per stdin line, one JSON reply per line."""
    import signal

    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints of any library go to stderr, never into the protocol
    if memory_mb:
        import resource

        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)

    from dagrpo_verl import grading

    def on_alarm(signum, frame):
        raise _SoftDeadline()

    signal.signal(signal.SIGALRM, on_alarm)
    grading.grade("\\boxed{\\frac{1}{2}}", "0.5")  # warm math-verify's caches before taking requests
    protocol_out.write(b'{"ready": true}\n')
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError as e:
            reply = {"status": "error", "error": f"bad request: {e}"}
        else:
            reply = _serve_one(grading, request, soft_deadline_s)
        protocol_out.write(json.dumps(reply).encode("ascii") + b"\n")


def _serve_one(grading, request: dict, soft_deadline_s: float) -> dict:
    import signal

    try:
        signal.setitimer(signal.ITIMER_REAL, soft_deadline_s)
        try:
            correct = grading.grade(
                request["response"], request["ground_truth"], request["data_source"], request["require_boxed"]
            )
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return {"status": "ok", "correct": bool(correct)}
    except _SoftDeadline:
        return {"status": "timeout"}
    except BaseException as e:  # noqa: BLE001 - MemoryError, RecursionError, anything: a counted failure
        return {"status": "error", "error": f"{type(e).__name__}: {str(e)[:200]}"}
