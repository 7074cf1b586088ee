"""scripts/cluster_validate.py: the tree passes a real kube-apiserver's server-side dry-run (with the real
CRDs and their CEL rules), `istioctl analyze` and kube-score; and each of them catches a broken copy that
the schema check (kubeconform) lets through.

One etcd + kube-apiserver serves the whole session (``apiserver`` fixture); the tools are built by
scripts/platform_tools.sh (.ci/run starts it in the background at the beginning of CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cluster_validate
import pytest
import render

from .conftest import REPO, copy_tree
from .test_kubeconform import drop_block, edit, run_kubeconform

APP = "kubernetes/apps/ai-services/kokoro-api"
pytestmark = pytest.mark.timeout(3600)  # the first use may wait for the tools' cold build


@pytest.fixture(scope="session")
def platform_tools() -> None:
    """kube-apiserver, istioctl and kube-score: found, or built now (waiting for .ci/run's background
    build if it is still running: the script holds a lock)."""
    names = {"kube-apiserver": "KUBE_APISERVER", "istioctl": "ISTIOCTL", "kube-score": "KUBE_SCORE"}
    if all(render.find_tool(name, env) for name, env in names.items()):
        return
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "BIN": str(venv_bin), "PATH": f"{venv_bin}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "platform_tools.sh")],
        capture_output=True, text=True, timeout=3600, check=False, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"scripts/platform_tools.sh failed:\n{proc.stdout}\n{proc.stderr}")
    if shutil.which("etcd") is None and not Path("/usr/bin/etcd").is_file():
        pytest.fail("etcd is missing: apt-get install etcd-server (.ci/run does)")


@pytest.fixture(scope="session")
def apiserver(platform_tools) -> Iterator[cluster_validate.ApiServer]:
    with cluster_validate.ApiServer() as server:
        yield server


def problems_of(report: dict, validator: str) -> dict[str, list[str]]:
    return {source: found for source, found in report[validator].items() if found}


# --------------------------------------------------------------------------- the tree passes


def test_tree_passes_server_side_dry_run(apiserver) -> None:
    report = cluster_validate.validate(REPO, ("apiserver",), server=apiserver)
    assert not problems_of(report, "apiserver"), cluster_validate.problems(report)
    checked = set(report["apiserver"])
    for name in (
        f"{APP}/app/deployment.yaml",
        f"{APP}/app/waypoint.yaml",
        f"{APP}/app/virtualservice.yaml",
        f"{APP}/app/destinationrule.yaml",
        f"{APP}/app/ciliumnetworkpolicy.yaml",
        f"{APP}/app/servicemonitor.yaml",
        f"{APP}/secrets/secret.sops.yaml",
        "kubernetes/apps/istio-system/istio/app/helmrelease.yaml",
        "kubernetes/apps/kube-system/cilium/app/helmrelease.yaml",
        "kubernetes/apps/kube-system/gateway-api/ks.yaml",
        "kubernetes/flux/cluster/ks.yaml",
    ):
        assert name in checked, f"{name} was not dry-run: {sorted(checked)}"


def test_tree_passes_istioctl_analyze(apiserver) -> None:
    report = cluster_validate.validate(REPO, ("istioctl",), server=apiserver)
    assert not problems_of(report, "istioctl"), cluster_validate.problems(report)
    assert f"{APP}/app/virtualservice.yaml" in report["istioctl"]


def test_tree_passes_kube_score(platform_tools) -> None:
    report = cluster_validate.validate(REPO, ("kube-score",))
    assert not problems_of(report, "kube-score"), cluster_validate.problems(report)
    assert f"{APP}/app/deployment.yaml" in report["kube-score"]


def test_kube_score_ignores_exactly_the_two_justified_checks() -> None:
    assert len(cluster_validate.KUBE_SCORE_IGNORED) == 2
    assert all(len(reason) > 20 for reason in cluster_validate.KUBE_SCORE_IGNORED.values())


@pytest.mark.parametrize("component", ["smoke-test", "httproute"])
def test_opt_in_components_pass_all_three(component: str, apiserver, tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "repo")
    k = root / APP / "app" / "kustomization.yaml"
    k.write_text(k.read_text() + f"components:\n  - ../../../../components/{component}\n")
    report = cluster_validate.validate(root, server=apiserver)
    assert not any(problems_of(report, v) for v in report), cluster_validate.problems(report)
    assert any(f"components/{component}" in source for source in report["apiserver"]), sorted(
        report["apiserver"]
    )


# --------------------------------------------------------------------------- broken copies

# Each breaks one thing the JSON schemas cannot see: kubeconform passes the copy, the validator fails it.
BROKEN: dict[str, tuple[Callable[[Path], None], str, str, str]] = {
    # Istio's CRD checks durations with a CEL rule (duration(self) >= duration('1ms'))
    "cel-duration": (
        edit(f"{APP}/app/virtualservice.yaml", "perTryTimeout: 30s", 'perTryTimeout: "30"'),
        "apiserver",
        "virtualservice.yaml",
        "valid duration",
    ),
    # the Gateway API CRD's CEL rule: no two listeners with the same port, protocol and hostname
    "cel-listener-clash": (
        edit(
            f"{APP}/app/waypoint.yaml",
            "      protocol: HBONE\n",
            "      protocol: HBONE\n    - name: mesh-again\n      port: 15008\n      protocol: HBONE\n",
        ),
        "apiserver",
        "waypoint.yaml",
        "Combination of port, protocol and hostname must be unique",
    ),
    # server-side apply: a list keyed by name holds a name twice
    "duplicate-listener-name": (
        edit(
            f"{APP}/app/waypoint.yaml",
            "      protocol: HBONE\n",
            "      protocol: HBONE\n    - name: mesh\n      port: 15009\n      protocol: HBONE\n",
        ),
        "apiserver",
        "waypoint.yaml",
        'duplicate entries for key [name="mesh"]',
    ),
    # Pod Security admission: the namespace warns on "restricted"; a pod that may run as root violates it
    "pod-security": (
        lambda root: [
            edit(f"{APP}/app/deployment.yaml", "        runAsNonRoot: true\n", "")(root),
            edit(f"{APP}/app/deployment.yaml", "            runAsNonRoot: true\n", "")(root),
        ],
        "apiserver",
        "deployment.yaml",
        "PodSecurity",
    ),
    # istioctl: the VirtualService routes to a host no Service provides
    "istio-unknown-host": (
        edit(
            f"{APP}/app/virtualservice.yaml",
            "            host: ${APP}.ai-services.svc.cluster.local\n",
            "            host: ${APP}-old.ai-services.svc.cluster.local\n",
        ),
        "istioctl",
        "virtualservice.yaml",
        "IST0101",
    ),
    # kube-score: a Service sends traffic to pods that say nothing about being ready
    "no-readiness-probe": (
        drop_block(f"{APP}/app/deployment.yaml", "          readinessProbe:", 7),
        "kube-score",
        "deployment.yaml",
        "readiness",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_copy_is_caught(case: str, tmp_path: Path, schemas_dir: str, request) -> None:
    mutate, validator, file, needle = BROKEN[case]
    root = copy_tree(tmp_path / "repo")
    mutate(root)
    schema_check = run_kubeconform(root, schemas_dir)
    assert schema_check.returncode == 0, "kubeconform already catches this: " + schema_check.stdout
    server = request.getfixturevalue("apiserver") if validator in ("apiserver", "istioctl") else None
    if server is None:
        request.getfixturevalue("platform_tools")
    report = cluster_validate.validate(root, (validator,), server=server)
    found = problems_of(report, validator)
    assert any(
        source.endswith(file) and any(needle.lower() in p.lower() for p in ps) for source, ps in found.items()
    ), cluster_validate.problems(report)


def test_cli_reports_per_file(platform_tools, tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "repo")
    BROKEN["no-readiness-probe"][0](root)
    script = str(REPO / "scripts" / "cluster_validate.py")
    proc = subprocess.run(
        [sys.executable, script, "--root", str(root), "--only", "kube-score"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAIL {APP}/app/deployment.yaml" in proc.stdout and "readinessProbe" in proc.stdout
    assert f"ok   {APP}/app/service.yaml" in proc.stdout
