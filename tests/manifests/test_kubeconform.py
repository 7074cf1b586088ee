"""The tree validates strictly and offline; each kind of mistake is rejected naming file and field."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import REPO, copy_tree, require_tool

APP = "kubernetes/apps/ai-services/kokoro-api"


def run_kubeconform(root: Path, schemas_dir: str) -> subprocess.CompletedProcess[str]:
    require_tool("kustomize", "KUSTOMIZE")
    require_tool("kubeconform", "KUBECONFORM")
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "kubeconform.py"),
            "--root",
            str(root),
            "--schemas",
            schemas_dir,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_tree_passes_offline(schemas_dir: str) -> None:
    result = run_kubeconform(REPO, schemas_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 problems" in result.stdout
    for name in (
        "deployment.yaml",
        "virtualservice.yaml",
        "destinationrule.yaml",
        "servicemonitor.yaml",
        "waypoint.yaml",
        "secret.sops.yaml",
        "waypoint-pdb.yaml",
        "serviceaccount.yaml",
        "kubernetes/apps/istio-system/istio/app/helmrelease.yaml",
        "kubernetes/apps/kube-system/cilium/app/helmrelease.yaml",
        "kubernetes/apps/kube-system/gateway-api/ks.yaml",
        "kubernetes/components/smoke-test/job.yaml",
        "kubernetes/flux/cluster/ks.yaml",
    ):
        assert name in result.stdout, f"{name} was not validated:\n{result.stdout}"


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        file = root / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new, 1))

    return apply


def add_file(path: str, text: str, kustomization: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / path).write_text(text)
        k = root / kustomization
        k.write_text(k.read_text() + f"  - ./{Path(path).name}\n")

    return apply


def drop_block(path: str, start: str, lines: int) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        file = root / path
        text = file.read_text().splitlines(keepends=True)
        index = next(i for i, line in enumerate(text) if line.startswith(start))
        del text[index : index + lines]
        file.write_text("".join(text))

    return apply


WIDGET = "---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec: {}\n"

NEGATIVE_CASES = {
    "attempts-as-string": (
        edit(f"{APP}/app/virtualservice.yaml", "attempts: 3", 'attempts: "3"'),
        "virtualservice.yaml",
        "retries.attempts",
    ),
    "unknown-field-virtualservice": (
        edit(f"{APP}/app/virtualservice.yaml", "  hosts:\n", "  mirrorTo: x\n  hosts:\n"),
        "virtualservice.yaml",
        "mirrorTo",
    ),
    "unknown-field-deployment": (
        edit(f"{APP}/app/deployment.yaml", "          ports:\n", "          portz: []\n          ports:\n"),
        "deployment.yaml",
        "portz",
    ),
    "duplicate-key": (
        edit(f"{APP}/app/service.yaml", "  type: ClusterIP\n", "  type: ClusterIP\n  type: NodePort\n"),
        "service.yaml",
        "spec.type",
    ),
    "ks-without-sourceRef": (
        drop_block(f"{APP}/ks.yaml", "  sourceRef:", 4),
        "kokoro-api/ks.yaml",
        "sourceRef",
    ),
    "kind-without-schema": (
        add_file(f"{APP}/app/widget.yaml", WIDGET, f"{APP}/app/kustomization.yaml"),
        "widget.yaml",
        "could not find schema for Widget",
    ),
    "zero-digest-placeholder": (
        edit(
            f"{APP}/app/deployment.yaml",
            "kokoro-api:0.1.0\n",
            "kokoro-api:0.1.0@sha256:" + "0" * 64 + "\n",
        ),
        "deployment.yaml",
        "all-zero digest",
    ),
    "untagged-image": (
        edit(f"{APP}/app/deployment.yaml", "kokoro-api:0.1.0\n", "kokoro-api:latest\n"),
        "deployment.yaml",
        "version tag",
    ),
    "smoke-job-unknown-field": (
        edit(
            "kubernetes/components/smoke-test/job.yaml",
            "          command:\n",
            "          commands: []\n          command:\n",
        ),
        "job.yaml",
        "commands",
    ),
    "platform-helmrelease-typo": (
        edit(
            "kubernetes/apps/kube-system/cilium/app/helmrelease.yaml", "  interval: 1h\n", "  intervall: 1h\n"
        ),
        "helmrelease.yaml",
        "intervall",
    ),
    "substitution-typo": (
        edit(f"{APP}/app/service.yaml", "  name: ${APP}\n", "  name: ${APPP}\n"),
        "service.yaml",
        "APPP",
    ),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE_CASES))
def test_broken_variant_is_rejected(case: str, tmp_path: Path, schemas_dir: str) -> None:
    mutate, file, field = NEGATIVE_CASES[case]
    root = tmp_path / "repo"
    copy_tree(root)
    mutate(root)
    result = run_kubeconform(root, schemas_dir)
    assert result.returncode != 0, f"{case} passed validation:\n{result.stdout}"
    failing = [line for line in result.stdout.splitlines() if field in line]
    assert failing, f"no message names {field!r}:\n{result.stdout}"
    assert f"FAIL {APP}" in result.stdout or "FAIL kubernetes/" in result.stdout
    report = result.stdout
    # the failing file is named on the FAIL line that precedes the message
    blocks = report.split("FAIL ")
    assert any(block.split("\n", 1)[0].endswith(file) and field in block for block in blocks), report


def test_saved_voices_component_validates_and_mounts_the_claim(tmp_path: Path, schemas_dir: str) -> None:
    """The opt-in component (kubernetes/components/saved-voices): enabled in a copy of the tree, the whole
    tree still validates strictly, and the rendered Deployment persists saved mixes on the claim."""
    import render

    root = tmp_path / "repo"
    copy_tree(root)
    k = root / APP / "app" / "kustomization.yaml"
    k.write_text(k.read_text() + "components:\n  - ../../../../components/saved-voices\n")
    result = run_kubeconform(root, schemas_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 problems" in result.stdout, result.stdout
    resources = render.render_path(APP, root=root)
    pod = next(r for r in resources if r.kind == "Deployment").doc["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "app")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KOKORO_VOICES_DIR"] == "/var/lib/kokoro/voices"
    assert {"name": "voices", "mountPath": "/var/lib/kokoro/voices"} in container["volumeMounts"]
    assert {"name": "voices", "persistentVolumeClaim": {"claimName": "kokoro-api-voices"}} in pod["volumes"]
    # the patch adds to the Deployment's lists, it does not replace them
    assert {"KOKORO_MAX_QUEUE_WAIT_S", "KOKORO_API_KEYS"} <= set(env)
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/tmp/audio"}


GOTK_COMPONENTS = """---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec: {}
"""
GOTK_SYNC = """---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 10m0s
  path: ./kubernetes/flux/cluster
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
"""


def test_files_flux_bootstrap_generates_are_left_alone(tmp_path: Path, schemas_dir: str) -> None:
    """`flux bootstrap --path=kubernetes/flux/cluster` commits flux-system/ (Flux's CRDs and controllers,
    which no schema catalogue covers, and a Kustomization of the folder itself): the tree still passes."""
    root = copy_tree(tmp_path / "repo")
    generated = root / "kubernetes" / "flux" / "cluster" / "flux-system"
    generated.mkdir()
    (generated / "gotk-components.yaml").write_text(GOTK_COMPONENTS)
    (generated / "gotk-sync.yaml").write_text(GOTK_SYNC)
    (generated / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        "  - gotk-components.yaml\n  - gotk-sync.yaml\n"
    )
    result = run_kubeconform(root, schemas_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flux-system" not in result.stdout and "0 problems" in result.stdout
