"""The README's configuration table matches the Settings model; its newcomer commands exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_config_table_in_sync():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_doc.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "./dev serve" in head and "./dev test" in head
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci
