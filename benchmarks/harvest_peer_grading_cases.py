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
"""Collect the labelled (response, gold, expected) grading cases of peers' public test suites.

Writes ``benchmarks/data/peer_grading_cases.jsonl``, one case per line::

    {"id", "kind": "math" | "choice", "response", "ground_truth", "expected": bool,
     "repo", "path", "commit", "test", "gold" (as the peer wrote it), "note"}

Only the cases are taken (facts: an input and the label its authors gave it), never code. Sources,
read from git clones at the recorded commits (``--mirror-dir/<owner>+<name>/repo``):

* huggingface/Math-Verify ``tests/*.py``, huggingface/lighteval ``tests/unit/metrics/test_extractive_match.py``:
  every ``pytest.mark.parametrize`` row with a gold, a prediction and a 0/1 label, read from the AST.
  Rows that test a non-default option (``strict=False``, ``allow_set_relation_comp=True``) and
  rows in another language than English are left out (counted in the summary).
* huggingface/lighteval ``tests/unit/metrics/test_cases/*.json`` (math and GPQA metrics): every
  response whose label the expected metric value fixes (one sample, or avg@k / pass@k of 0 or 1).
* inclusionAI/AReaL ``tests/test_math_verify_reward.py``: ``reward = *_reward_fn(completions=..., answer=...)``
  followed by ``assert reward == <0/1>``, read from the AST.
* huggingface/trl ``tests/test_rewards.py`` (``accuracy_reward``), NVIDIA-NeMo/RL
  ``tests/unit/environments/test_math_environment.py`` (fixtures), agentica-project/rllm (DeepScaleR)
  ``rllm/rewards/math_reward.py`` (its ``__main__`` example), huggingface/Math-Verify
  ``tests/test_string_extraction.py`` (letter extraction): transcribed below (:data:`TRANSCRIBED`),
  because their labels live in fixtures and assertions that no generic reader gets right.
  QwenLM/Qwen2.5-Math's grader ships no labelled cases (only commented-out prints).

    python benchmarks/harvest_peer_grading_cases.py [--mirror-dir /work/.mirror]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "peer_grading_cases.jsonl"

MATH_VERIFY = "huggingface/Math-Verify"
LIGHTEVAL = "huggingface/lighteval"
AREAL = "inclusionAI/AReaL"
TRL = "huggingface/trl"
NEMO_RL = "NVIDIA-NeMo/RL"
RLLM = "agentica-project/rllm"

PARAMETRIZE_FILES = {
    MATH_VERIFY: [
        "tests/test_all.py",
        "tests/test_boxed.py",
        "tests/test_numina_cases.py",
        "tests/test_open_thoughts.py",
        "tests/test_yujianll.py",
        "tests/test_strict.py",
    ],
    LIGHTEVAL: ["tests/unit/metrics/test_extractive_match.py"],
}
LIGHTEVAL_JSON = [
    ("tests/unit/metrics/test_cases/avg_at_k_math.json", "math"),
    ("tests/unit/metrics/test_cases/pass_at_k_math.json", "math"),
    ("tests/unit/metrics/test_cases/g_pass_at_k_math.json", "math"),
    ("tests/unit/metrics/test_cases/g_pass_at_k_latex.json", "math"),
    ("tests/unit/metrics/test_cases/expr_gold_metric.json", "math"),
    ("tests/unit/metrics/test_cases/gpqa_instruct_metric.json", "choice"),
    ("tests/unit/metrics/test_cases/gpqa_instruct_pass_at_k.json", "choice"),
]
AREAL_FILE = "tests/test_math_verify_reward.py"

_NEMO_PATH = "tests/unit/environments/test_math_environment.py"
_NEMO_TIMEOUT = (
    r"We are given that \(x = (2 + \sqrt{3})^{1000}\), so \(n = \lfloor x \rfloor\), and \(f = x - n\). We want"
    r" to find the value of \(x(1 - f)\)."
    "\n\n"
    r"First, let's examine the binomial expansion of \(x = (2 + \sqrt{3})^{1000}\). Notice that:"
    "\n"
    "\\[\n(2 + \\sqrt{3}) = 2 + \\sqrt{3} = \\left(2 - (\\sqrt{3})\\right)^{-1}\n\\]\n\n"
    r"Using the binomial theorem, we can expand \(x\):"
    "\n"
    "\\[\nx = \\sum_{k=0}^{1000} \\binom{1000}{k} (2)^{1000-k} (\\sqrt{3})^k\n\\]\n\n"
    r"Notice that \((2 - \sqrt{3}) = -1\), so we can use this to our advantage. We can rewrite \(x - 1\) as:"
    "\n"
    "\\[\nx - 1 = (2 + \\sqrt{3})^{1000} - 1 = \\sum_{k=0}^{1000} \\binom{1000}{k} (2)^{1000-k} (\\sqrt{3})^k - 1\n"
    "\\]\n\n"
    r"Now, let's consider \(f = x - n = (2 + \sqrt{3})^{1000} - \lfloor (2 + \sqrt{3})^{10"
)
_MC_PROMPT_NOTE = "response to 'Answer the following multiple choice question ... Answer: $LETTER'"

#: (repo, path, test, kind, response, ground truth, expected, note)
TRANSCRIBED = [
    (
        TRL,
        "tests/test_rewards.py",
        "test_accuracy_reward_correct_answer",
        "math",
        r"\boxed{\frac{63}{400}}",
        r"\frac{63}{400}",
        True,
        "",
    ),
    (
        TRL,
        "tests/test_rewards.py",
        "test_accuracy_reward_correct_answer",
        "math",
        r"\boxed{\frac{63}{400}}",
        "63/400",
        True,
        "",
    ),
    (
        TRL,
        "tests/test_rewards.py",
        "test_accuracy_reward_wrong_answer",
        "math",
        r"\boxed{\frac{64}{400}}",
        r"\frac{63}{400}",
        False,
        "",
    ),
    (TRL, "tests/test_rewards.py", "test_accuracy_reward_wrong_answer_no_latex", "math", r"\boxed{3}", "6", False, ""),
    (
        TRL,
        "tests/test_rewards.py",
        "test_accuracy_reward_in_worker_thread",
        "math",
        r"\boxed{\frac{1}{3}}",
        r"\frac{1}{3}",
        True,
        "graded off the main thread",
    ),
    (NEMO_RL, _NEMO_PATH, "test_math_env_step_basic", "math", "2 + 2 = \\boxed{4}", "4", True, ""),
    (NEMO_RL, _NEMO_PATH, "test_math_env_step_basic", "math", "3 * 4 = \\boxed{12}", "\\boxed{12}", True, ""),
    (NEMO_RL, _NEMO_PATH, "test_math_env_step_basic", "math", "10 - 5 = \\boxed{5}", "\\boxed{5}", True, ""),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_multi_reward_env_step_basic",
        "math",
        "<think>2 + 2 = 4</think>\n<answer>4</answer>",
        "4",
        True,
        "reward/correctness",
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_multi_reward_env_step_basic",
        "math",
        "<think>3 * 4 = 12</think>\n<answer>12.5</answer>",
        "12",
        False,
        "reward/correctness",
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_multi_reward_env_step_basic",
        "math",
        "<think>10 - 5 = 5\n<answer>5</answer>",
        "5",
        True,
        "reward/correctness",
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_multichoice_env_step_basic[english]",
        "choice",
        "\nAnswer: C",
        "C",
        True,
        _MC_PROMPT_NOTE,
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_multichoice_env_step_basic[english]",
        "choice",
        "\nAnswer: B",
        "B",
        True,
        _MC_PROMPT_NOTE,
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_multichoice_env_step_basic[english]",
        "choice",
        "\nAnswer: D",
        "B",
        False,
        _MC_PROMPT_NOTE,
    ),
    (NEMO_RL, _NEMO_PATH, "test_math_env_step_mixed", "math", "2 + 2 = \\boxed{\\frac{8}{2}}", "4.0", True, ""),
    (NEMO_RL, _NEMO_PATH, "test_math_env_step_mixed", "math", "3 * 4 = 13", "\\boxed{12}", False, ""),
    (NEMO_RL, _NEMO_PATH, "test_math_env_step_mixed", "math", "10 - 5 = \\boxed{5}", "\\boxed{5}", True, ""),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_math_env_various_batches",
        "math",
        "2 + 1.333 = \\boxed{\\frac{10}{3}}",
        "3.33333333",
        True,
        "",
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_math_exception_handling",
        "math",
        "\\boxed{Eq(x**2/16 + y**2/12, 1)}",
        "Eq(x**2/4 + y**2/3, 1)",
        False,
        "",
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_math_timeout_handling",
        "math",
        _NEMO_TIMEOUT,
        "13",
        False,
        "hangs math-verify without its signal timeout (worker threads)",
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_math_env_extracted_answers_stay_aligned_with_rewards",
        "math",
        "The answer is \\boxed{42}",
        "42",
        True,
        "",
    ),
    (
        NEMO_RL,
        _NEMO_PATH,
        "test_math_env_extracted_answers_stay_aligned_with_rewards",
        "math",
        "The answer is \\boxed{137}",
        "42",
        False,
        "",
    ),
    (
        RLLM,
        "rllm/rewards/math_reward.py",
        "__main__ example",
        "math",
        "<think>...</think>\nThe answer is \\boxed{24 + 14*x + (-13)*x^2 - 2*x^3 + x^4}.",
        "$x^{4}-2 x^{3}-13 x^{2}+14 x+24$",
        True,
        "DeepScaleR's demo input (second of its two gold answers); label: the two polynomials are equal",
    ),
    (
        MATH_VERIFY,
        "tests/test_string_extraction.py",
        "test_string_extraction",
        "choice",
        "The answer is A.",
        "A",
        True,
        "expected extraction ['A']",
    ),
    (
        MATH_VERIFY,
        "tests/test_string_extraction.py",
        "test_string_extraction",
        "choice",
        "Final answer is B",
        "B",
        True,
        "expected extraction ['b', 'B']",
    ),
    (
        MATH_VERIFY,
        "tests/test_string_extraction.py",
        "test_string_extraction",
        "choice",
        "No valid answer here",
        "A",
        False,
        "expected extraction [] (nothing)",
    ),
    (
        MATH_VERIFY,
        "tests/test_string_extraction.py",
        "test_string_extraction",
        "choice",
        "A. Because B is not valid",
        "A",
        True,
        "expected extraction ['a', 'A']",
    ),
    (
        MATH_VERIFY,
        "tests/test_string_extraction.py",
        "test_string_extraction",
        "choice",
        "Because B is valid",
        "B",
        True,
        "expected extraction ['b', 'B']",
    ),
]


class _Unsupported(Exception):
    pass


def _value(node: ast.AST):
    """A literal, with names/attributes (``Language.FRENCH``) and calls as their source text."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # implicit string concatenation split by +
        return _value(node.left) + _value(node.right)
    if isinstance(node, (ast.Name, ast.Attribute, ast.Call)):
        return ast.unparse(node)
    raise _Unsupported(ast.dump(node)[:80])


def _git_show(repo_dir: Path, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo_dir), "show", f"HEAD:{path}"], check=True, capture_output=True, text=True
    ).stdout


def _commit(repo_dir: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo_dir), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def _parametrize_rows(source: str):
    """(test name, line, {param: value}) for every parametrize row of every test function."""
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for deco in fn.decorator_list:
            if not (isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("mark.parametrize")):
                continue
            names = (
                [n.strip() for n in _value(deco.args[0]).split(",")]
                if isinstance(_value(deco.args[0]), str)
                else _value(deco.args[0])
            )
            if not isinstance(deco.args[1], (ast.List, ast.Tuple)):
                continue
            for element in deco.args[1].elts:
                try:
                    values = _value(element)
                except _Unsupported:
                    continue
                if len(names) == 1:
                    values = [values]
                yield fn.name, element.lineno, dict(zip(names, values, strict=True))


def _language(params: dict) -> str:
    language = str(params.get("language", "Language.ENGLISH"))
    return language.rsplit(".", 1)[-1].lower()


def harvest_parametrize(repo: str, repo_dir: Path, path: str, skipped: Counter) -> list[dict]:
    cases = []
    for test, line, params in _parametrize_rows(_git_show(repo_dir, path)):
        if not {"gold", "pred"} <= params.keys():
            continue
        expected = params.get("expected", params.get("result"))
        if expected not in (0, 1, True, False):
            skipped["no 0/1 label"] += 1
            continue
        if params.get("strict") is False or params.get("allow_set_relation_comp") is True:
            skipped["non-default option (strict=False / allow_set_relation_comp=True)"] += 1
            continue
        if _language(params) != "english":
            skipped[f"language {_language(params)}"] += 1
            continue
        kind = "choice" if "abc" in test else "math"
        gold = params["gold"]
        truth = gold
        note = ""
        if kind == "choice":  # lighteval's golds are option texts like "(D) Alina": the option letter is the label
            letter = re.search(r"\(([A-Z])\)", gold) or re.search(r"(?:^|\n)([A-Z])\b", gold)
            truth = letter.group(1)
            note = f"gold option {gold!r}" if truth != gold else ""
        extra = {k: v for k, v in params.items() if k not in ("gold", "pred", "expected", "result")}
        if extra:
            note = (note + "; " if note else "") + "peer test parameters " + json.dumps(extra)
        cases.append(
            dict(
                kind=kind,
                response=params["pred"],
                ground_truth=truth,
                expected=bool(expected),
                repo=repo,
                path=path,
                test=f"{test} (line {line})",
                gold=gold,
                note=note,
            )
        )
    return cases


def harvest_lighteval_json(repo_dir: Path, path: str, kind: str, skipped: Counter) -> list[dict]:
    cases = []
    for case in json.loads(_git_show(repo_dir, path))["test_cases"]:
        doc, texts, expected = case["doc"], case["model_response"]["text"], case["expected_output"]
        gold = doc["choices"][doc["gold_index"]]
        plain = {k: v for k, v in expected.items() if not k.startswith("m")}  # mG-pass@k is another statistic
        values = set(plain.values())
        labels: list[bool] | None = None
        if len(texts) == 1 and values <= {0.0, 1.0} and len(values) == 1:
            labels = [values == {1.0}]
        elif any(k.startswith("avg@") for k in plain) and values in ({0.0}, {1.0}):
            labels = [values == {1.0}] * len(texts)
        elif values == {0.0}:  # pass@k = 0 (every threshold): no sample is correct
            labels = [False] * len(texts)
        if labels is None:
            skipped["lighteval json: label of each sample not fixed by the metric value"] += 1
            continue
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            cases.append(
                dict(
                    kind=kind,
                    response=text,
                    ground_truth=gold,
                    expected=label,
                    repo=LIGHTEVAL,
                    path=path,
                    test=f"{case['name']} [sample {i}]",
                    gold=gold,
                    note=json.dumps(expected),
                )
            )
    return cases


def harvest_areal(repo_dir: Path, skipped: Counter) -> list[dict]:
    cases = []
    for fn in ast.walk(ast.parse(_git_show(repo_dir, AREAL_FILE))):
        if not isinstance(fn, ast.FunctionDef) or not fn.name.startswith("test_"):
            continue
        calls: dict[str, ast.Call] = {}
        for stmt in fn.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call) and len(stmt.targets) == 1:
                calls[ast.unparse(stmt.targets[0])] = stmt.value
            if not isinstance(stmt, ast.Assert) or not isinstance(stmt.test, ast.Compare):
                continue
            left, (op,), (right,) = stmt.test.left, stmt.test.ops, stmt.test.comparators
            name = ast.unparse(left)
            if not isinstance(op, ast.Eq) or name not in calls or not isinstance(right, ast.Constant):
                continue
            kwargs = {k.arg: k.value for k in calls[name].keywords}
            try:
                response, answer = _value(kwargs["completions"]), _value(kwargs["answer"])
            except (KeyError, _Unsupported):
                continue
            if not isinstance(answer, str) or right.value not in (0.0, 1.0):
                skipped["AReaL: answer not a string"] += 1
                continue
            function = ast.unparse(calls[name].func)
            cases.append(
                dict(
                    kind="math",
                    response=response,
                    ground_truth=answer,
                    expected=right.value == 1.0,
                    repo=AREAL,
                    path=AREAL_FILE,
                    test=f"{fn.name} (line {stmt.lineno})",
                    gold=answer,
                    note=f"{function}",
                )
            )
    return cases


def _case_id(case: dict) -> str:
    key = json.dumps([case["repo"], case["path"], case["test"], case["response"], case["ground_truth"]])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mirror-dir",
        type=Path,
        default=Path("/work/.mirror"),
        help="holds <owner>+<name>/repo git clones of the peers",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    def repo_dir(repo: str) -> Path:
        return args.mirror_dir / repo.replace("/", "+") / "repo"

    skipped: Counter = Counter()
    cases: list[dict] = []
    for repo, paths in PARAMETRIZE_FILES.items():
        for path in paths:
            cases += harvest_parametrize(repo, repo_dir(repo), path, skipped)
    for path, kind in LIGHTEVAL_JSON:
        cases += harvest_lighteval_json(repo_dir(LIGHTEVAL), path, kind, skipped)
    cases += harvest_areal(repo_dir(AREAL), skipped)
    for repo, path, test, kind, response, truth, expected, note in TRANSCRIBED:
        cases.append(
            dict(
                kind=kind,
                response=response,
                ground_truth=truth,
                expected=expected,
                repo=repo,
                path=path,
                test=test,
                gold=truth,
                note=note,
            )
        )

    commits = {repo: _commit(repo_dir(repo)) for repo in {c["repo"] for c in cases}}
    seen: dict[tuple, dict] = {}
    for case in cases:
        key = (case["kind"], case["response"], case["ground_truth"], case["expected"])
        if key in seen:  # lighteval copied many of Math-Verify's tests: keep the first, name the copy
            seen[key].setdefault("also_in", []).append(f"{case['repo']}:{case['path']}:{case['test']}")
            skipped["duplicate of an earlier case"] += 1
            continue
        case["commit"] = commits[case["repo"]]
        case["id"] = _case_id(case)
        seen[key] = case
    unique = list(seen.values())
    contradictions = Counter((c["kind"], c["response"], c["ground_truth"]) for c in unique)
    for case in unique:
        if contradictions[(case["kind"], case["response"], case["ground_truth"])] > 1:
            case["note"] = (case["note"] + "; " if case["note"] else "") + "peers disagree on this label"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    order = (
        "id",
        "kind",
        "response",
        "ground_truth",
        "expected",
        "repo",
        "path",
        "commit",
        "test",
        "gold",
        "note",
        "also_in",
    )
    with args.out.open("w", encoding="utf-8") as f:
        for case in unique:
            f.write(json.dumps({k: case[k] for k in order if k in case}, ensure_ascii=False) + "\n")
    by = Counter((c["kind"], c["repo"]) for c in unique)
    print(
        json.dumps(
            {
                "cases": len(unique),
                "by_kind_and_repo": {f"{k}/{r}": n for (k, r), n in sorted(by.items())},
                "left_out": dict(skipped),
                "out": str(args.out),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
