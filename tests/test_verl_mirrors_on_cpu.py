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
"""Every copy of a verl body (``# mirrors verl 0.9.1 <module>:<symbol>``) is in sync with the installed verl.

The markers are found by scanning the package's source (:func:`dagrpo_verl.integration.verl_mirrors.find_markers`),
verl's symbols are read from the installed verl with ``inspect.getsource``, and their fingerprints are
compared with the committed ``dagrpo_verl/integration/verl_mirrors.json``. Real verl throughout; the failure cases feed
the checker an edited copy of verl's real source.
"""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest

from dagrpo_verl.integration import verl_mirrors
from dagrpo_verl.integration.verl_mirrors import (
    Marker,
    check_mirrors,
    copied_lines,
    find_markers,
    fingerprint,
    load_fingerprints,
    verl_source,
)


@pytest.fixture(scope="module")
def markers() -> list[Marker]:
    found = find_markers()
    assert found, "no '# mirrors verl' marker found in dagrpo_verl"
    return found


def test_every_mirrored_verl_symbol_matches_its_fingerprint(markers):
    problems = check_mirrors(markers, load_fingerprints(), verl_version=version("verl"))
    assert not problems, "\n".join(problems)


def test_an_edited_verl_function_fails_naming_our_copy(markers):
    """verl's real ``ppo_loss`` source with one name changed: the check names every copy of it (file:line)."""
    target = next(m for m in markers if m.key == "verl.workers.utils.losses:ppo_loss")

    def edited_source(module: str, symbol: str) -> str:
        source = verl_source(module, symbol)
        if f"{module}:{symbol}" == target.key:
            assert "loss_agg_mode" in source
            return source.replace("loss_agg_mode", "loss_aggregation_mode", 1)
        return source

    problems = check_mirrors(markers, load_fingerprints(), source_of=edited_source)
    copies = [m for m in markers if m.key == target.key]
    assert len(problems) == len(copies)
    for marker, problem in zip(copies, problems, strict=True):
        assert problem.startswith(f"dagrpo_verl/integration/losses.py:{marker.line}: verl's {target.key} changed")
        assert "re-sync the copy" in problem and "python -m dagrpo_verl.integration.verl_mirrors --update" in problem


def test_a_whitespace_only_change_in_verl_is_no_change():
    source = verl_source("verl.workers.utils.losses", "ppo_loss")
    reformatted = "\n\n".join("    " + line.rstrip() + "  " for line in source.splitlines())
    assert fingerprint(reformatted) == fingerprint(source)
    assert fingerprint(source.replace("+=", "-=", 1)) != fingerprint(source)


def test_a_symbol_verl_does_not_have_fails_naming_our_copy(markers):
    real = markers[0]
    renamed = Marker(
        real.path, real.line, real.module, real.symbol + "_gone", real.version, real.first_line, real.last_line
    )
    (problem,) = check_mirrors([renamed], {renamed.key: "0" * 64})
    assert problem.startswith(f"{real.where}: our copy mirrors {renamed.key}, which the installed verl does not have")
    missing_module = Marker(real.path, real.line, "verl.no_such_module", "f", real.version, 1, 1)
    (problem,) = check_mirrors([missing_module], {missing_module.key: "0" * 64})
    assert "which the installed verl does not have (ModuleNotFoundError" in problem


def test_a_table_entry_no_marker_uses_fails(markers):
    table = {**load_fingerprints(), "verl.trainer.ppo.core_algos:agg_loss": "0" * 64}
    problems = check_mirrors(markers, table)
    assert problems == [
        "verl_mirrors.json: verl.trainer.ppo.core_algos:agg_loss is named by no '# mirrors verl' marker; remove it "
        "(then run `python -m dagrpo_verl.integration.verl_mirrors --update` (rewrites verl_mirrors.json))."
    ]
    (problem,) = check_mirrors(markers[:1], {})
    assert "has no fingerprint in verl_mirrors.json" in problem
    (problem,) = check_mirrors(
        markers[:1],
        {markers[0].key: fingerprint(verl_source(markers[0].module, markers[0].symbol))},
        verl_version="0.10.0",
    )
    assert problem.startswith(f"{markers[0].where}: the marker names verl 0.9.1, the installed verl is 0.10.0")


def test_marker_extent_and_malformed_markers(tmp_path):
    (tmp_path / "mod.py").write_text(
        '"""Docstring text: # mirrors verl 0.9.1 verl.a:b is no marker."""\n'  # 1
        "\n"  # 2
        "def f(x):\n"  # 3
        '    """Doc."""\n'  # 4
        "    # mirrors verl 0.9.1 verl.workers.utils.losses:ppo_loss (whole rest)\n"  # 5
        "    y = x + 1\n"  # 6
        "\n"  # 7
        "    if y:\n"  # 8
        "        # mirrors verl 0.9.1 verl.utils.tracking:FileLogger.__init__\n"  # 9
        "        y += 1\n"  # 10
        "        y += 2\n"  # 11
        "    return y\n"  # 12
        "\n"  # 13
        "\n"  # 14
        "def g(x):\n"  # 15
        "    # mirrors verl 0.9.1 verl.utils.config:validate_config\n"  # 16
        "    x += 1\n"  # 17
        "    # end mirror\n"  # 18
        "    return x\n"  # 19
    )
    found = find_markers(tmp_path)
    assert [(m.line, m.key, m.first_line, m.last_line) for m in found] == [
        (5, "verl.workers.utils.losses:ppo_loss", 6, 12),
        (9, "verl.utils.tracking:FileLogger.__init__", 10, 11),
        (16, "verl.utils.config:validate_config", 17, 17),
    ]
    assert [m.copied_lines for m in found] == [6, 2, 1]
    assert copied_lines(found) == 7  # lines 10-11 counted once
    (tmp_path / "bad.py").write_text("x = 1  # mirrors verl ppo_loss\n")
    with pytest.raises(ValueError, match=r"bad.py:1: malformed mirror marker"):
        find_markers(tmp_path)


def test_update_rewrites_the_table_from_the_installed_verl(tmp_path, monkeypatch, capsys):
    table = tmp_path / "verl_mirrors.json"
    table.write_text(json.dumps({"verl.trainer.ppo.core_algos:agg_loss": "0" * 64}))
    monkeypatch.setattr(verl_mirrors, "FINGERPRINTS_FILE", table)
    assert verl_mirrors.main([]) == 1
    assert "is named by no '# mirrors verl' marker" in capsys.readouterr().err
    assert verl_mirrors.main(["--update"]) == 0
    assert json.loads(table.read_text()) == load_fingerprints(verl_mirrors.FINGERPRINTS_FILE)
    assert f"{copied_lines(find_markers())} copied lines" in capsys.readouterr().out
