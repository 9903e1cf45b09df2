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
"""Every Python file starts with the Apache-2.0 header (verl's hooks require one; a shebang line may come first).

python scripts/check_license_headers.py            # every Python file git tracks; exit 1 naming those without
python scripts/check_license_headers.py --fix      # add this project's header where it is missing
python scripts/check_license_headers.py FILE...    # only these (what pre-commit passes)
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

HEADER = """\
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
"""
#: What a header must hold in its first lines (any copyright holder: code adapted from elsewhere keeps its own).
REQUIRED = ("# Copyright ", '# Licensed under the Apache License, Version 2.0 (the "License");')
ROOT = pathlib.Path(__file__).resolve().parent.parent


def has_header(text: str) -> bool:
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    head = "\n".join(lines[:4])
    return lines[:1] != [] and lines[0].startswith(REQUIRED[0]) and REQUIRED[1] in head


def add_header(text: str) -> str:
    if text.startswith("#!"):
        shebang, _, rest = text.partition("\n")
        return f"{shebang}\n{HEADER}{rest}"
    return HEADER + text


def tracked_python_files() -> list[pathlib.Path]:
    """The Python files git tracks, or (outside a git checkout) every one below the root but the ignored trees."""
    try:
        out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [ROOT / name for name in out.split()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".venv", "outputs", "build", "dist", ".git"}
        return [path for path in ROOT.rglob("*.py") if not skip & set(path.relative_to(ROOT).parts)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=pathlib.Path)
    parser.add_argument("--fix", action="store_true", help="add the header where it is missing")
    args = parser.parse_args(argv)
    missing = []
    for path in args.files or tracked_python_files():
        text = path.read_text(encoding="utf-8")
        if not text.strip() or has_header(text):
            continue
        if args.fix:
            path.write_text(add_header(text), encoding="utf-8")
        missing.append(path)
    for path in missing:
        print(f"{'added the header to' if args.fix else 'no Apache-2.0 header:'} {path}")
    return 1 if missing and not args.fix else 0


if __name__ == "__main__":
    sys.exit(main())
