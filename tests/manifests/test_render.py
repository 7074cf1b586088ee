"""scripts/render.py renders like Flux: generated kustomizations, targetNamespace, postBuild substitution."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import render
import yaml

from .conftest import REPO, require_tool


def test_substitution_forms() -> None:
    variables = {"APP": "kokoro-api", "EMPTY": ""}
    assert render.substitute_text("${APP}", variables) == "kokoro-api"
    assert render.substitute_text("${NS:=monitoring}", variables) == "monitoring"
    assert render.substitute_text("${EMPTY:=x}/${EMPTY=y}", variables) == "x/"
    assert render.substitute_text("$${APP} and $APP", variables) == "${APP} and $APP"
    with pytest.raises(render.RenderError, match="APPP"):
        render.substitute_text("name: ${APPP}", variables, where="f.yaml")
    with pytest.raises(render.RenderError, match="not a valid variable name"):
        render.substitute_text("x", {"1BAD": "v"}, where="f.yaml")


def test_disabled_resources_are_left_alone() -> None:
    doc = {
        "kind": "Secret",
        "metadata": {"name": "s", "annotations": {render.SUBSTITUTE_KEY: "disabled"}},
        "stringData": {"k": "${NOT_A_VAR}"},
    }
    (out,) = render.apply_substitution([render.Resource(doc, None)], {"APP": "x"})
    assert out.doc["stringData"]["k"] == "${NOT_A_VAR}"


def test_app_render_matches_flux(rendered) -> None:
    names = {(r.kind, r.name) for r in rendered}
    assert ("Deployment", "kokoro-api") in names and ("Service", "kokoro-api") in names
    text = render.to_yaml(rendered)
    assert "${APP}" not in text and "config.kubernetes.io/origin" not in text
    assert all(r.origin is not None and r.origin.is_file() for r in rendered)


def test_root_kustomization_is_generated_like_flux() -> None:
    """cluster-apps points at ./kubernetes/apps, which has no kustomization.yaml: Flux generates one."""
    require_tool("kustomize", "KUSTOMIZE")
    resources = render.render_path("kubernetes/flux/cluster/ks.yaml")
    kinds = {(r.kind, r.name) for r in resources}
    assert kinds == {
        ("Namespace", "ai-services"),
        ("Kustomization", "kokoro-api"),
        ("Kustomization", "kokoro-api-keys"),
        # the platform layer
        ("Namespace", "istio-system"),
        ("Kustomization", "istio"),
        ("Kustomization", "cilium"),
        ("GitRepository", "gateway-api"),
        ("Kustomization", "gateway-api-crds"),
    }


def test_image_override_uses_kustomize_images() -> None:
    require_tool("kustomize", "KUSTOMIZE")
    resources = render.render_path(
        "ai-services/kokoro-api", images={"ghcr.io/kokoro-api/kokoro-api": "localhost/kokoro-api:dev"}
    )
    (deployment,) = [r.doc for r in resources if r.kind == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost/kokoro-api:dev"


def test_cli_prints_one_kind(tmp_path: Path) -> None:
    require_tool("kustomize", "KUSTOMIZE")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "render.py"),
            "ai-services/kokoro-api",
            "--kind",
            "Deployment",
            "--skip-secrets",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs if d] == ["Deployment"]


def test_missing_kustomize_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUSTOMIZE", str(tmp_path / "nope"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(render, "VENV_BIN", tmp_path / "no-venv")
    with pytest.raises(render.RenderError, match="kustomize not found"):
        render.kustomize_binary()


def test_decrypt_needs_the_key(monkeypatch, tmp_path: Path) -> None:
    """Without the (discarded) throwaway private key, decryption fails clearly and names the file."""
    if shutil.which("sops") is None and not (Path(sys.executable).parent / "sops").is_file():
        pytest.skip("sops not installed")
    monkeypatch.setenv("SOPS", require_tool("sops", "SOPS"))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "missing.txt"))
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    keys = render.render_path("kubernetes/apps/ai-services/kokoro-api/secrets")
    with pytest.raises(render.RenderError, match="secret.sops.yaml"):
        render.decrypt_secrets(keys)
