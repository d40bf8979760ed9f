"""Docs that run: every script's `--help` documents every option with its default, and every Python block of
README.md executes (Hub ids replaced by small local models, see `HUB_SUBSTITUTES`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "examples/app.py",
    "examples/demo.py",
    "examples/finetune_digits.py",
    "training/pretrain.py",
    "training/finetune.py",
    "training/train_vq_model.py",
    "modeling/convert_official_checkpoint.py",
    "modeling/convert_official_vq_model.py",
]


def help_entries(text: str) -> dict[str, str]:
    """`--help` output -> {invocation: help text}, one entry per argument listed after the usage and description."""
    entries: dict[str, str] = {}
    invocation = None
    in_section = False
    for line in text.splitlines():
        if line and not line[0].isspace():
            in_section = line.endswith(":") and not line.startswith("usage:")
            invocation = None
        elif in_section and re.match(r"  \S", line):
            invocation, _, help_text = line.strip().partition("  ")
            entries[invocation] = help_text.strip()
        elif in_section and invocation is not None and line.strip():
            entries[invocation] = f"{entries[invocation]} {line.strip()}".strip()
    return entries


@pytest.fixture(scope="module")
def help_outputs() -> dict[str, subprocess.CompletedProcess]:
    """Every script's `--help`, run side by side (each start imports torch and transformers)."""
    env = {**os.environ, "COLUMNS": "1000", "HF_HUB_OFFLINE": "1"}
    processes = {
        script: subprocess.Popen(
            [sys.executable, script, "--help"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for script in SCRIPTS
    }
    outputs = {}
    for script, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        outputs[script] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return outputs


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_of_every_script_has_help_and_its_default(script, help_outputs):
    result = help_outputs[script]
    assert result.returncode == 0, result.stderr
    entries = help_entries(result.stdout)
    assert len(entries) >= 3, f"{script} --help lists no arguments:\n{result.stdout}"
    missing_help = [name for name, text in entries.items() if not text]
    assert not missing_help, f"{script}: options without help text: {missing_help}"
    optional = {name: text for name, text in entries.items() if name.startswith("-") and name != "-h, --help"}
    missing_default = [name for name, text in optional.items() if "default" not in text]
    assert not missing_default, f"{script}: options whose help does not show the default: {missing_default}"
