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
"""The verl code copied into this package, found by its markers and checked against the installed verl.

Where dagrpo_verl must copy a verl body, the copy starts with a marker comment::

    # mirrors verl 0.9.1 verl.workers.utils.losses:ppo_loss (optional note)

naming verl's module (dotted) and symbol (``function``, ``Class.method``). The copy runs from the marker
to the end of the block the marker sits in (usually the rest of the function), or to a
``# end mirror`` comment in that block, whichever comes first.

:data:`FINGERPRINTS_FILE` (``verl_mirrors.json``) holds, for every symbol a marker names, the sha256 of
verl's source of that symbol (:func:`fingerprint`: indentation and blank lines normalised) at the time the
copies were last synced. ``tests/test_verl_mirrors_on_cpu.py`` fails, naming our copy, when the installed
verl's source differs, when a marker names a symbol verl does not have, and when the table holds a symbol
no marker names. After re-syncing the copies with the new verl::

    python -m dagrpo_verl.integration.verl_mirrors --update     # rewrite the table from the installed verl
    python -m dagrpo_verl.integration.verl_mirrors              # report: markers, copied lines, problems
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FINGERPRINTS_FILE",
    "MARKER",
    "Marker",
    "check_mirrors",
    "copied_lines",
    "find_markers",
    "fingerprint",
    "load_fingerprints",
    "main",
    "verl_source",
]

#: The package whose source is scanned for markers (all of ``dagrpo_verl``, not only this folder).
PACKAGE_DIR = Path(__file__).resolve().parent.parent

#: Committed table: ``"<module>:<symbol>"`` -> sha256 of verl's normalised source of that symbol.
FINGERPRINTS_FILE = Path(__file__).resolve().with_name("verl_mirrors.json")

#: The verl version every marker names.
VERL_VERSION = "0.9.1"

#: The marker comment (module docstring): verl's module dotted, the symbol a dotted attribute path.
MARKER = re.compile(
    r"#\s*mirrors verl (?P<version>\d+\.\d+\.\d+)\s+(?P<module>verl(?:\.\w+)*):(?P<symbol>\w+(?:\.\w+)*)"
)

#: Closes a copy before the end of its block.
END_MARKER = re.compile(r"#\s*end mirror\b")


@dataclass(frozen=True)
class Marker:
    """One marked copy of a verl body in our source."""

    path: Path  # our file
    line: int  # 1-based line of the marker comment
    module: str  # verl module, dotted
    symbol: str  # attribute path inside the module
    version: str  # the verl version the marker names
    first_line: int  # first line of the copy (the statement after the marker)
    last_line: int  # last line of the copy

    @property
    def key(self) -> str:
        """``"<module>:<symbol>"``, the key of :data:`FINGERPRINTS_FILE`."""
        return f"{self.module}:{self.symbol}"

    @property
    def where(self) -> str:
        """``dagrpo_verl/<file>:<line>`` of the marker (the full path outside the package)."""
        path = self.path.relative_to(PACKAGE_DIR.parent) if self.path.is_relative_to(PACKAGE_DIR.parent) else self.path
        return f"{path}:{self.line}"

    @property
    def copied_lines(self) -> int:
        """Non-blank lines of the copy."""
        lines = self.path.read_text(encoding="utf-8").splitlines()[self.first_line - 1 : self.last_line]
        return sum(1 for line in lines if line.strip())


def _statement_lists(tree: ast.AST) -> Iterable[list[ast.stmt]]:
    """Every block (list of statements) in a module."""
    for node in ast.walk(tree):
        for value in vars(node).values():
            if isinstance(value, list) and value and all(isinstance(v, ast.stmt) for v in value):
                yield value


def _copy_extent(tree: ast.AST, lines: list[str], marker_line: int) -> tuple[int, int]:
    """``(first, last)`` lines of the copy that a marker on ``marker_line`` starts (see the module docstring)."""
    following = [
        (stmt.lineno, block)
        for block in _statement_lists(tree)
        for stmt in block
        if stmt.lineno > marker_line and not any(s.lineno <= marker_line <= (s.end_lineno or s.lineno) for s in block)
        # the statement right after the marker in the same block: the marker is not inside a sibling
    ]
    if not following:
        raise ValueError(f"line {marker_line}: a mirror marker must be followed by the copied statements")
    first, block = min(following, key=lambda item: item[0])
    last = max(stmt.end_lineno or stmt.lineno for stmt in block)
    for number in range(first, last + 1):
        if END_MARKER.search(lines[number - 1]):
            return first, number - 1
    return first, last


def _comments(text: str) -> Iterable[tuple[int, str]]:
    """``(line, text)`` of every comment in a Python source (text in strings and docstrings is no comment)."""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def find_markers(package_dir: Path = PACKAGE_DIR) -> list[Marker]:
    """Every ``# mirrors verl`` marker in the package's Python files, in file and line order."""
    markers = []
    for path in sorted(package_dir.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "mirrors verl" not in text:
            continue
        lines = text.splitlines()
        tree = None
        for number, comment in _comments(text):
            found = MARKER.search(comment)
            if found is None:
                if "mirrors verl" in comment:
                    raise ValueError(
                        f"{path}:{number}: malformed mirror marker {comment!r}; write "
                        f"'# mirrors verl {VERL_VERSION} <verl.module>:<Symbol.attr>'"
                    )
                continue
            tree = tree or ast.parse(text, filename=str(path))
            first, last = _copy_extent(tree, lines, number)
            markers.append(Marker(path, number, found["module"], found["symbol"], found["version"], first, last))
    return markers


def verl_object(module: str, symbol: str):
    """verl's object ``module:symbol``: Ray actor classes are unwrapped to the class they wrap, and a
    function that a plugin wrapped with ``functools.wraps`` to the function verl defines."""
    obj = importlib.import_module(module)
    for name in symbol.split("."):
        obj = getattr(obj, "__ray_actor_class__", obj)
        obj = getattr(obj, name)  # AttributeError: verl has no such symbol
    return inspect.unwrap(obj)


def verl_source(module: str, symbol: str) -> str:
    """The source text of verl's ``module:symbol``."""
    return inspect.getsource(verl_object(module, symbol))


def fingerprint(source: str) -> str:
    """sha256 of a source text with indentation, trailing spaces and blank lines normalised."""
    lines = [line.rstrip() for line in textwrap.dedent(source).splitlines()]
    normalised = "\n".join(line for line in lines if line)
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def load_fingerprints(path: Path | None = None) -> dict[str, str]:
    """The committed table (:data:`FINGERPRINTS_FILE` unless ``path``; empty when the file does not exist)."""
    path = FINGERPRINTS_FILE if path is None else path
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def check_mirrors(
    markers: list[Marker],
    fingerprints: dict[str, str],
    source_of: Callable[[str, str], str] = verl_source,
    verl_version: str | None = None,
) -> list[str]:
    """Every mismatch between our marked copies, the table and the installed verl, as messages (empty: in sync).

    Args:
        markers: :func:`find_markers`.
        fingerprints: :func:`load_fingerprints`.
        source_of: ``(module, symbol) -> source`` of the installed verl (:func:`verl_source`).
        verl_version: the installed verl's version; markers naming another one are reported.
    """
    problems = []
    update = f"then run `python -m dagrpo_verl.integration.verl_mirrors --update` (rewrites {FINGERPRINTS_FILE.name})"
    for marker in markers:
        if verl_version is not None and marker.version != verl_version:
            problems.append(
                f"{marker.where}: the marker names verl {marker.version}, the installed verl is {verl_version}; "
                f"re-sync the copy with verl {verl_version}'s {marker.key}, update the marker, {update}."
            )
        try:
            source = source_of(marker.module, marker.symbol)
        except (ImportError, AttributeError, TypeError, OSError) as error:
            problems.append(
                f"{marker.where}: our copy mirrors {marker.key}, which the installed verl does not have "
                f"({type(error).__name__}: {error}); find where verl moved that code, re-sync the copy and the "
                f"marker, {update}."
            )
            continue
        expected = fingerprints.get(marker.key)
        if expected is None:
            problems.append(f"{marker.where}: {marker.key} has no fingerprint in {FINGERPRINTS_FILE.name}; {update}.")
        elif fingerprint(source) != expected:
            problems.append(
                f"{marker.where}: verl's {marker.key} changed since our copy (lines {marker.first_line}-"
                f"{marker.last_line}) was synced; re-sync the copy with the installed verl's source, {update}."
            )
    used = {marker.key for marker in markers}
    for key in sorted(set(fingerprints) - used):
        problems.append(
            f"{FINGERPRINTS_FILE.name}: {key} is named by no '# mirrors verl' marker; remove it ({update})."
        )
    return problems


def copied_lines(markers: list[Marker]) -> int:
    """Non-blank lines of copied verl code (each line once, even under two markers)."""
    seen: set[tuple[Path, int]] = set()
    for marker in markers:
        lines = marker.path.read_text(encoding="utf-8").splitlines()
        for number in range(marker.first_line, marker.last_line + 1):
            if lines[number - 1].strip():
                seen.add((marker.path, number))
    return len(seen)


def _installed_verl_version() -> str:
    from importlib.metadata import version

    return version("verl")


def main(argv: list[str] | None = None) -> int:
    """CLI: report the markers and problems (exit 1 on any), or ``--update`` the table from the installed verl."""
    parser = argparse.ArgumentParser(
        prog="python -m dagrpo_verl.integration.verl_mirrors", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--update", action="store_true", help=f"rewrite {FINGERPRINTS_FILE.name} from the installed verl"
    )
    args = parser.parse_args(argv)
    markers = find_markers()
    if args.update:
        table = {marker.key: fingerprint(verl_source(marker.module, marker.symbol)) for marker in markers}
        FINGERPRINTS_FILE.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {len(table)} fingerprints to {FINGERPRINTS_FILE}")
    for marker in markers:
        print(f"{marker.where:45s} {marker.copied_lines:4d} lines  {marker.key}")
    print(
        f"{len(markers)} markers, {len(set(m.key for m in markers))} verl symbols, {copied_lines(markers)} copied lines"
    )
    problems = check_mirrors(markers, load_fingerprints(), verl_version=_installed_verl_version())
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
