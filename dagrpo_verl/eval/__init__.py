"""Evaluation on the paper's nine benchmarks: ``python -m dagrpo_verl.eval``.

Generates with vLLM (GPU) or transformers (CPU), grades math with math-verify and
multiple choice by the chosen option label, and writes the paper's table as
Markdown and CSV. See ``docs/eval.md``.
"""
