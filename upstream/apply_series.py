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
"""Apply the upstream patch series to a scratch copy of the installed verl, and test each patch.

``python upstream/apply_series.py DEST [--test] [--upto N]``

1. Builds a pristine verl tree in ``DEST`` from the installed wheel: every ``verl/`` and
   ``tests/`` file listed in ``verl-<version>.dist-info/RECORD``, each checked against its
   recorded sha256 (so an edited site-packages is refused), committed to a fresh git repository.
   The installed verl is only read, never written.
2. For each ``upstream/NNNN-*.patch`` in order: ``git apply --check``, then ``git apply``
   and a commit.
3. With ``--test``: after each patch, runs the ``tests/**/test_*_on_cpu.py`` files that patch
   adds or changes, with ``PYTHONPATH=DEST`` (the patched verl shadows the installed one), and
   ``VERL_USE_EXTERNAL_PLUGINS=none`` so that no ``verl.plugins`` entry point (dagrpo's
   included) takes part in verl's own tests.
4. With ``--lint``: ``ruff check`` (verl's rules, ``upstream/ruff.toml``) of every Python file the
   series changes reports nothing the pristine file did not already report, and ``ruff format
   --check`` passes on them.

The scratch tree is what ``python -m verl.trainer.main_ppo`` runs with ``PYTHONPATH=DEST``.
Exit status 0 only when every step succeeded.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

__all__ = ["PATCH_DIR", "added_tests", "apply_series", "build_pristine", "lint_series", "patches", "run_patch_tests"]

#: Directory of the patch series (this file's directory).
PATCH_DIR = pathlib.Path(__file__).resolve().parent
#: verl's ruff settings.
RUFF_CONFIG = PATCH_DIR / "ruff.toml"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "dagrpo-verl",
    "GIT_AUTHOR_EMAIL": "dagrpo-verl@localhost",
    "GIT_COMMITTER_NAME": "dagrpo-verl",
    "GIT_COMMITTER_EMAIL": "dagrpo-verl@localhost",
}


def _git(dest: pathlib.Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=dest, capture_output=True, text=True, env={**os.environ, **_GIT_ENV}, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {dest}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def patches() -> list[pathlib.Path]:
    """The series, in order (``NNNN-*.patch`` in this directory)."""
    return sorted(PATCH_DIR.glob("[0-9][0-9][0-9][0-9]-*.patch"))


def build_pristine(dest: pathlib.Path, distribution: str = "verl") -> str:
    """Copy the installed ``verl/`` and ``tests/`` of ``distribution`` into ``dest`` and commit it.

    Every copied file must match the sha256 in the wheel's RECORD.

    Returns:
        the installed version.
    """
    dist = importlib.metadata.distribution(distribution)
    root = pathlib.Path(dist.locate_file(""))
    record = dist.read_text("RECORD") or ""
    dest.mkdir(parents=True, exist_ok=False)
    copied = 0
    for path, digest, _size in csv.reader(record.splitlines()):
        if not path.startswith(("verl/", "tests/")) or "__pycache__" in path or not digest:
            continue
        algorithm, expected = digest.split("=", 1)
        data = (root / path).read_bytes()
        actual = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode()
        if actual != expected:
            raise RuntimeError(f"{root / path} differs from the wheel's RECORD; reinstall {distribution}.")
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        copied += 1
    if copied == 0:
        raise RuntimeError(f"no verl/ or tests/ files found in the RECORD of {distribution}")
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", f"verl {dist.version} (from the installed wheel, RECORD-checked)")
    return dist.version


def added_tests(patch: pathlib.Path) -> list[str]:
    """The ``tests/**/test_*_on_cpu.py`` files a patch creates or modifies."""
    names = re.findall(r"^\+\+\+ b/(tests/\S*test_\S*_on_cpu\.py)$", patch.read_text(), flags=re.M)
    return sorted(set(names))


def run_patch_tests(dest: pathlib.Path, patch: pathlib.Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a patch's own tests against the scratch tree ``dest`` (which shadows the installed verl)."""
    tests = added_tests(patch)
    if not tests:
        raise RuntimeError(f"{patch.name} adds no tests/**/test_*_on_cpu.py")
    env = {**os.environ, "PYTHONPATH": str(dest), "VERL_USE_EXTERNAL_PLUGINS": "none"}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(dest), *tests]
    return subprocess.run(command, cwd=dest, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _ruff_findings(root: pathlib.Path, files: list[str]) -> set[tuple[str, str, str]]:
    """(file, rule, message) of every ``ruff check`` finding, without line numbers (they move with edits)."""
    command = [sys.executable, "-m", "ruff", "check", "--config", str(RUFF_CONFIG), "--output-format", "json", *files]
    proc = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    findings = json.loads(proc.stdout or "[]")
    return {(os.path.relpath(f["filename"], root), f["code"] or "", f["message"]) for f in findings}


def lint_series(dest: pathlib.Path) -> list[str]:
    """Problems of the Python files changed since the pristine commit of ``dest`` (empty list: clean).

    ``ruff check`` findings the pristine version of a file does not have, and ``ruff format --check``.
    """
    pristine = _git(dest, "rev-list", "--max-parents=0", "HEAD").split()[0]
    changed = [f for f in _git(dest, "diff", "--name-only", pristine, "HEAD").split() if f.endswith(".py")]
    if not changed:
        return []
    before = dest.parent / (dest.name + ".lint-base")
    shutil.rmtree(before, ignore_errors=True)
    existing = [f for f in changed if _git(dest, "ls-tree", "--name-only", pristine, f).strip()]
    for f in existing:
        (before / f).parent.mkdir(parents=True, exist_ok=True)
        (before / f).write_text(_git(dest, "show", f"{pristine}:{f}"))
    try:
        known = _ruff_findings(before, existing) if existing else set()
    finally:
        shutil.rmtree(before, ignore_errors=True)
    new = sorted(_ruff_findings(dest, changed) - known)
    problems = [f"{path}: {code} {message}" for path, code, message in new]
    command = [sys.executable, "-m", "ruff", "format", "--config", str(RUFF_CONFIG), "--check", *changed]
    proc = subprocess.run(command, cwd=dest, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        problems.append(proc.stdout.strip() or proc.stderr.strip())
    return problems


def apply_series(dest: pathlib.Path, upto: int | None = None, test: bool = False, log=print) -> bool:
    """Build ``dest`` and apply the series (the first ``upto`` patches); optionally test each patch."""
    version = build_pristine(dest)
    log(f"pristine verl {version} in {dest}")
    ok = True
    for patch in patches()[:upto]:
        _git(dest, "apply", "--check", str(patch))
        _git(dest, "apply", "--index", str(patch))
        _git(dest, "commit", "-q", "-m", patch.stem)
        log(f"applied {patch.name}")
        if test:
            proc = run_patch_tests(dest, patch)
            summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
            log(f"  tests {added_tests(patch)}: {summary}")
            if proc.returncode != 0:
                log(proc.stdout[-4000:] + proc.stderr[-4000:])
                ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=pathlib.Path, help="scratch directory to create (must not exist)")
    parser.add_argument("--test", action="store_true", help="run each patch's own tests after applying it")
    parser.add_argument("--lint", action="store_true", help="ruff (verl's rules) on the files the series changes")
    parser.add_argument("--upto", type=int, default=None, help="apply only the first N patches")
    parser.add_argument("--force", action="store_true", help="remove DEST first if it exists")
    args = parser.parse_args(argv)
    if args.force and args.dest.exists():
        shutil.rmtree(args.dest)
    ok = apply_series(args.dest, upto=args.upto, test=args.test)
    if args.lint:
        problems = lint_series(args.dest)
        print("lint: clean" if not problems else "lint:\n" + "\n".join(problems))
        ok = ok and not problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
