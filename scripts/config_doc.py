#!/usr/bin/env python3
"""Write (or --check) the README's configuration table from the Settings model, so the two never drift."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"


def table() -> str:
    sys.path.insert(0, str(ROOT / "image"))
    from kokoro_api.config import Settings

    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "`~/.cache/kokoro-api`" if name == "cache_dir" else "(computed)"
        elif field.default is None or field.default == "":
            default = "unset"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `KOKORO_{name.upper()}` | {default} | {(field.description or '').replace('|', '/')} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = ap.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if args.check:
        if new != text:
            print("README.md's configuration table is out of date: run scripts/config_doc.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
