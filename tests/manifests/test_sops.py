"""Secrets in the tree are encrypted, and the SOPS set-up round-trips with the real sops and age."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO, require_tool

ENCRYPTED = re.compile(r"^ENC\[AES256_GCM,data:[^,]*,iv:[^,]+,tag:[^,]+,type:\w+\]$")


def sops_files() -> list[Path]:
    return sorted((REPO / "kubernetes").rglob("*.sops.yaml"))


def sops_rule() -> dict:
    config = yaml.safe_load((REPO / ".sops.yaml").read_text())
    (rule,) = config["creation_rules"]
    return rule


def leaves(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def test_there_is_a_sops_secret() -> None:
    assert sops_files(), "expected the API-key Secret as a *.sops.yaml file"


@pytest.mark.parametrize("path", sops_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_sops_file_is_encrypted(path: Path) -> None:
    rule = sops_rule()
    assert re.search(rule["path_regex"], str(path.relative_to(REPO))), "the creation rule must cover it"
    for doc in yaml.safe_load_all(path.read_text()):
        assert "sops" in doc, f"{path}: no sops metadata: not encrypted"
        assert doc["sops"]["encrypted_regex"] == rule["encrypted_regex"]
        recipients = {entry["recipient"] for entry in doc["sops"].get("age", [])}
        assert recipients == set(rule["key_groups"][0]["age"]), f"{path}: re-run `task sops:updatekeys`"
        secret_fields = {k: v for k, v in doc.items() if re.fullmatch(rule["encrypted_regex"], k)}
        assert secret_fields, f"{path}: no data/stringData"
        for field, value in leaves(secret_fields):
            assert isinstance(value, str) and ENCRYPTED.match(value), f"{path}: {field} is plaintext"


def _sops(args: list[str], cwd: Path, key_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
    env.pop("SOPS_AGE_KEY", None)
    if key_file:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    return subprocess.run(
        [require_tool("sops", "SOPS"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _age_key(directory: Path, name: str) -> tuple[Path, str]:
    key_file = directory / f"{name}.txt"
    subprocess.run([require_tool("age-keygen"), "-o", str(key_file)], check=True, capture_output=True)
    public = re.search(r"public key: (age1\w+)", key_file.read_text()).group(1)
    return key_file, public


def test_round_trip_and_rotation_with_a_throwaway_key(tmp_path: Path) -> None:
    """Encrypt with the repository's rule (our own recipient in its place), decrypt, then rotate the
    recipient with `sops updatekeys` the way docs/gitops.md tells an operator to."""
    first_key, first_public = _age_key(tmp_path, "first")
    second_key, second_public = _age_key(tmp_path, "second")
    config = yaml.safe_load((REPO / ".sops.yaml").read_text())
    config["creation_rules"][0]["key_groups"] = [{"age": [first_public]}]
    (tmp_path / ".sops.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    secret = tmp_path / "kubernetes" / "apps" / "demo" / "secret.sops.yaml"
    secret.parent.mkdir(parents=True)
    plaintext = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kokoro-api-keys"},
        "type": "Opaque",
        "stringData": {"KOKORO_API_KEYS": "key-one,key-two"},
    }
    secret.write_text(yaml.safe_dump(plaintext, sort_keys=False))
    relative = str(secret.relative_to(tmp_path))

    result = _sops(["--encrypt", "--in-place", relative], tmp_path)
    assert result.returncode == 0, result.stderr
    encrypted = yaml.safe_load(secret.read_text())
    assert "key-one" not in secret.read_text()
    assert ENCRYPTED.match(encrypted["stringData"]["KOKORO_API_KEYS"])
    assert encrypted["metadata"]["name"] == "kokoro-api-keys", "metadata stays readable for kustomize"

    result = _sops(["--decrypt", relative], tmp_path, first_key)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == plaintext

    # rotation: the operator's new recipient replaces the old one
    config["creation_rules"][0]["key_groups"] = [{"age": [second_public]}]
    (tmp_path / ".sops.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = _sops(["updatekeys", "--yes", relative], tmp_path, first_key)
    assert result.returncode == 0, result.stderr
    assert _sops(["--decrypt", relative], tmp_path, second_key).returncode == 0
    assert _sops(["--decrypt", relative], tmp_path, first_key).returncode != 0, (
        "the old key must be locked out"
    )


def _init(root: Path, key_file: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(key_file), "SOPS": require_tool("sops", "SOPS")}
    env["PATH"] = f"{Path(env['SOPS']).parent}:{env['PATH']}"
    env.pop("SOPS_AGE_KEY", None)
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sops_init.py"), "--root", str(root)],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_sops_init_makes_the_tree_yours_and_is_safe_to_repeat(tmp_path: Path) -> None:
    """`task sops:init` on a fresh clone: a new age key, .sops.yaml set to it, and the Secret (encrypted to
    the discarded throwaway key) written anew with a random API key that the new key decrypts. A second
    run keeps both the key and the Secret's content."""
    require_tool("age-keygen")
    root = tmp_path / "clone"
    (root / "kubernetes").mkdir(parents=True)
    shutil.copy(REPO / ".sops.yaml", root / ".sops.yaml")
    shutil.copytree(REPO / "kubernetes" / "apps", root / "kubernetes" / "apps")
    secret = "kubernetes/apps/ai-services/kokoro-api/secrets/secret.sops.yaml"
    key_file = tmp_path / "home" / "keys.txt"

    first = _init(root, key_file)
    assert first.returncode == 0, first.stdout + first.stderr
    public = re.search(r"public key: (age1\w+)", key_file.read_text()).group(1)
    assert sops_rule_of(root)["key_groups"] == [{"age": [public]}]
    assert "sops-age" in first.stdout and "created" in first.stdout
    decrypted = _sops(["--decrypt", secret], root, key_file)
    assert decrypted.returncode == 0, decrypted.stderr
    keys = yaml.safe_load(decrypted.stdout)["stringData"]["KOKORO_API_KEYS"]
    assert len(keys) >= 32 and "," not in keys
    assert (root / secret).read_text().startswith("# yaml-language-server: $schema=https://")

    second = _init(root, key_file)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "(kept)" in second.stdout and ": kept" in second.stdout
    again = _sops(["--decrypt", secret], root, key_file)
    assert yaml.safe_load(again.stdout)["stringData"]["KOKORO_API_KEYS"] == keys


def sops_rule_of(root: Path) -> dict:
    (rule,) = yaml.safe_load((root / ".sops.yaml").read_text())["creation_rules"]
    return rule
