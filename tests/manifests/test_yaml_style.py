"""yamllint is clean, and the manifests follow the repository's conventions (see docs/gitops.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

KEY_ORDER = ["apiVersion", "kind", "metadata", "spec"]
METADATA_ORDER = ["name", "namespace", "annotations", "labels"]
MANIFESTS = sorted(p for p in (REPO / "kubernetes").rglob("*.yaml"))


def tracked_yaml() -> list[str]:
    """The YAML files git tracks (work in progress of others is linted once committed); all if no git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "*.yaml", "*.yml", ".yamllint.yaml"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return ["."]
    return sorted({path for path in listed if (REPO / path).is_file()}) or ["."]


def test_yamllint_is_clean() -> None:
    pytest.importorskip("yamllint")
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", *tracked_yaml()],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_manifest_header_and_key_order(path: Path) -> None:
    lines = path.read_text().splitlines()
    schema_line = 0
    if not path.name.endswith(".sops.yaml"):  # sops rewrites its files without the `---`
        assert lines[0] == "---", "first line must be ---"
        schema_line = 1
    assert lines[schema_line].startswith("# yaml-language-server: $schema=https://"), "schema comment"
    for doc in yaml.safe_load_all(path.read_text()):
        keys = [k for k in doc if k in KEY_ORDER]
        assert keys == [k for k in KEY_ORDER if k in doc], f"top-level keys out of order: {list(doc)}"
        assert list(doc)[: len(keys)] == keys, f"apiVersion/kind/metadata/spec must come first: {list(doc)}"
        metadata = [k for k in doc.get("metadata", {}) if k in METADATA_ORDER]
        assert metadata == [k for k in METADATA_ORDER if k in metadata], f"metadata order: {metadata}"
