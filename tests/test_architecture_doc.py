"""docs/ARCHITECTURE.md: the "How to add a modality" walkthrough runs as written, in a fresh process."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def walkthrough_blocks() -> list[str]:
    section = DOC.read_text().split("## How to add a modality", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_add_a_modality_walkthrough_runs(tmp_path):
    blocks = walkthrough_blocks()
    assert len(blocks) >= 3, "the walkthrough lost its code blocks"
    script = []
    for block in blocks:
        first_line, _, body = block.partition("\n")
        match = re.match(r"# file: (\S+)", first_line)
        if match:
            (tmp_path / match.group(1)).write_text(body)
        else:
            script.append(block)
    script.append(
        "import subprocess, sys\n"
        "check = 'from transformers import AutoModelForMaskedLM, AutoProcessor; import fourm_hf;'"
        " \"m = AutoModelForMaskedLM.from_pretrained('heat_model'); p = AutoProcessor.from_pretrained('heat_processor');\""
        " \"print(m.config.modality('tok_heat@32').family.render, p.modality('tok_heat@32').num_tokens)\"\n"
        "out = subprocess.run([sys.executable, '-c', check], capture_output=True, text=True)\n"
        "assert out.returncode == 0, out.stderr[-3000:]\n"
        "print('RELOADED', out.stdout.strip())\n"
    )
    (tmp_path / "walkthrough.py").write_text("\n".join(script))
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "walkthrough.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "RELOADED heat_modality:render 16" in result.stdout
    assert (tmp_path / "heat.png").stat().st_size > 0
