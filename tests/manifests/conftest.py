"""Shared fixtures for the manifest tests: the repository, the real tools, and the rendered app."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import render  # noqa: E402

APP_PATH = "kubernetes/apps/ai-services/kokoro-api"


def tool(name: str, env: str | None = None) -> str | None:
    """A tool from $ENV, PATH, the venv next to the interpreter, or ~/go/bin."""
    candidates = [
        os.environ.get(env) if env else None,
        shutil.which(name),
        str(Path(sys.executable).parent / name),
        str(Path.home() / "go" / "bin" / name),
    ]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def require_tool(name: str, env: str | None = None) -> str:
    found = tool(name, env)
    if found is None:
        pytest.fail(f"{name} is not installed (see docs/gitops.md, Tools)")
    return found


def copy_tree(root: Path) -> Path:
    """A copy of what Flux reads (kubernetes/, and the smoke test the smoke-test component bundles) to
    break or extend in a test; returns root."""
    shutil.copytree(REPO / "kubernetes", root / "kubernetes")
    (root / "scripts").mkdir(exist_ok=True)
    shutil.copy(REPO / "scripts" / "smoke_test.py", root / "scripts" / "smoke_test.py")
    return root


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def schemas_dir() -> str:
    """Offline schemas: $KUBECONFORM_SCHEMAS_DIR, else ../shared/schemas next to the checkout."""
    configured = os.environ.get("KUBECONFORM_SCHEMAS_DIR")
    if configured:
        return configured
    shared = REPO.parent / "shared" / "schemas"
    if shared.is_dir():
        return str(shared)
    pytest.skip("no offline schemas: set KUBECONFORM_SCHEMAS_DIR (the public catalogues need network)")


@pytest.fixture(scope="session")
def rendered() -> list[render.Resource]:
    require_tool("kustomize", "KUSTOMIZE")
    return render.render_path(APP_PATH)


def only(resources: list[render.Resource], kind: str) -> dict:
    matches = [r.doc for r in resources if r.kind == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="session")
def deployment(rendered) -> dict:
    return only(rendered, "Deployment")


@pytest.fixture(scope="session")
def container(deployment) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(scope="session")
def service(rendered, deployment) -> dict:
    """The Service clients (and the mesh) use: the one named like the Deployment (the other one, headless,
    is how the pods find each other)."""
    name = deployment["metadata"]["name"]
    matches = [r.doc for r in rendered if r.kind == "Service" and r.doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one Service named like the Deployment, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="session")
def peers_service(rendered, service) -> dict:
    others = [r.doc for r in rendered if r.kind == "Service" and r.doc is not service]
    assert len(others) == 1, f"expected one more Service than {service['metadata']['name']}: {len(others)}"
    return others[0]


@pytest.fixture(scope="session")
def virtualservice(rendered) -> dict:
    return only(rendered, "VirtualService")


@pytest.fixture(scope="session")
def destinationrule(rendered) -> dict:
    return only(rendered, "DestinationRule")
