"""The platform layer and the cluster-readiness of the app: what a first `git push` needs to come up.

Gateway API CRDs -> Istio ambient -> app ordering, the Cilium values ambient needs, Talos' privileged
namespace, the waypoint's two replicas and PDB, the app's own ServiceAccount, ephemeral storage, hard
topology spread, and the smoke-test Job component.
"""

from __future__ import annotations

import json
import re

import cluster_validate
import pytest
import render
import yaml

from .conftest import APP_PATH, REPO, copy_tree, only
from .test_invariants import quantity_bytes

APP = "kubernetes/apps/ai-services/kokoro-api"


def flux_kustomizations() -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d
        for f in render.yaml_files(REPO / "kubernetes")
        for d in render.load_documents(f)
        if render.is_flux_kustomization(d)
    }


def docs_of(path: str) -> list[dict]:
    return render.load_documents(REPO / path)


def depends_on(ks: dict) -> list[str]:
    return [d["name"] for d in ks["spec"].get("dependsOn", [])]


# --------------------------------------------------------------------------- ordering


def test_app_waits_for_the_mesh_which_waits_for_the_crds() -> None:
    kss = flux_kustomizations()
    assert depends_on(kss["kokoro-api"]) == ["istio"]
    assert depends_on(kss["istio"]) == ["gateway-api-crds"]
    for name in ("istio", "gateway-api-crds", "cilium"):
        assert kss[name]["spec"].get("wait") is True, f"{name} is Ready only when what it applies is"
    # CRDs are never pruned: that would delete every Gateway and route of the cluster
    assert kss["gateway-api-crds"]["spec"]["prune"] is False


def test_gateway_api_version_is_the_one_validated() -> None:
    """The GitRepository the cluster pulls the CRDs from and the Go module the API-server validation
    installs them from are the same release."""
    (repo,) = [
        d for d in docs_of("kubernetes/apps/kube-system/gateway-api/ks.yaml") if d["kind"] == "GitRepository"
    ]
    assert repo["spec"]["ref"]["tag"] == cluster_validate.GATEWAY_API_VERSION
    (module, paths) = cluster_validate.CRD_SOURCES[0]
    assert module == f"sigs.k8s.io/gateway-api@{repo['spec']['ref']['tag']}"
    assert paths == [repo["spec"]["ignore"].split("!/")[1].strip().rstrip("/")]


def test_external_source_paths_are_not_rendered_from_this_repository() -> None:
    kss = {ks.name: ks for ks in render.find_flux_kustomizations(REPO)}
    assert not kss["gateway-api-crds"].in_repo
    assert all(ks.in_repo for name, ks in kss.items() if name != "gateway-api-crds")


# --------------------------------------------------------------------------- Istio and Cilium


def test_istio_is_ambient_one_version_in_order() -> None:
    releases = {
        d["metadata"]["name"]: d for d in docs_of("kubernetes/apps/istio-system/istio/app/helmrelease.yaml")
    }
    assert set(releases) == {"istio-base", "istiod", "istio-cni", "ztunnel"}
    versions = {r["spec"]["chart"]["spec"]["version"] for r in releases.values()}
    assert len(versions) == 1, versions
    for name in ("istiod", "istio-cni", "ztunnel"):
        assert releases[name]["spec"]["values"]["profile"] == "ambient", name
    assert depends_on(releases["istiod"]) == ["istio-base"]
    assert depends_on(releases["istio-cni"]) == ["istiod"] and depends_on(releases["ztunnel"]) == ["istiod"]


def test_istio_namespace_is_privileged_for_talos() -> None:
    (namespace,) = docs_of("kubernetes/apps/istio-system/namespace.yaml")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_cilium_values_coexist_with_ambient() -> None:
    (release,) = docs_of("kubernetes/apps/kube-system/cilium/app/helmrelease.yaml")
    values = release["spec"]["values"]
    assert values["cni"]["exclusive"] is False, "istio-cni's chained plugin would be deleted"
    if values.get("kubeProxyReplacement") in (True, "true"):
        assert values["socketLB"]["hostNamespaceOnly"] is True, "clients would skip the waypoint"
    if values.get("bpf", {}).get("masquerade"):
        assert values["bpf"]["hostLegacyRouting"] is True, "ambient health probes would fail"


# --------------------------------------------------------------------------- waypoint


def test_waypoint_runs_two_spread_replicas_with_a_pdb(rendered) -> None:
    gateway = only(rendered, "Gateway")
    ref = gateway["spec"]["infrastructure"]["parametersRef"]
    assert (ref["group"], ref["kind"]) == ("", "ConfigMap")
    options = next(r.doc for r in rendered if r.kind == "ConfigMap" and r.name == ref["name"])
    deployment = yaml.safe_load(options["data"]["deployment"])
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    waypoint_labels = {"gateway.networking.k8s.io/gateway-name": gateway["metadata"]["name"]}
    assert spread["labelSelector"]["matchLabels"] == waypoint_labels
    # a drained waypoint keeps forwarding running streams as long as the app's own grace period
    app = only(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= app["terminationGracePeriodSeconds"]
    config = json.loads(deployment["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"])
    assert config["terminationDrainDuration"] == "420s"
    pdbs = [r.doc for r in rendered if r.kind == "PodDisruptionBudget"]
    (pdb,) = [p for p in pdbs if p["spec"]["selector"]["matchLabels"] == waypoint_labels]
    assert pdb["spec"]["minAvailable"] == 1


def test_service_takes_ingress_traffic_through_the_waypoint(service) -> None:
    labels = service["metadata"]["labels"]
    assert labels["istio.io/use-waypoint"] == "waypoint"
    assert labels["istio.io/ingress-use-waypoint"] == "true"


def test_retries_are_counted_as_retries_in_the_docs(rendered) -> None:
    """Istio's `attempts` counts retries: attempts 3 is up to four tries. The docs must say so."""
    vs = only(rendered, "VirtualService")
    attempts = {route["retries"]["attempts"] for route in vs["spec"]["http"]}
    assert attempts == {3}
    gitops = (REPO / "docs" / "gitops.md").read_text()
    assert "four tries" in gitops and "three attempts" not in gitops


# --------------------------------------------------------------------------- the app's pod


def test_dedicated_service_account_without_token(rendered, deployment) -> None:
    pod = deployment["spec"]["template"]["spec"]
    account = only(rendered, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"] != "default"
    assert account["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is False


def test_ephemeral_storage_covers_the_emptydirs(deployment, container) -> None:
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    scratch = sum(quantity_bytes(v["emptyDir"]["sizeLimit"]) for v in volumes if "emptyDir" in v)
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert quantity_bytes(requests["ephemeral-storage"]) >= scratch
    assert quantity_bytes(limits["ephemeral-storage"]) > quantity_bytes(requests["ephemeral-storage"])


def test_replicas_never_share_a_node(deployment) -> None:
    (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert (
        spread["whenUnsatisfiable"] == "DoNotSchedule" and spread["topologyKey"] == "kubernetes.io/hostname"
    )


def test_namespace_labels() -> None:
    (namespace,) = docs_of("kubernetes/apps/ai-services/namespace.yaml")
    labels = namespace["metadata"]["labels"]
    assert labels["istio.io/dataplane-mode"] == "ambient"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")


# --------------------------------------------------------------------------- smoke-test Job


@pytest.fixture(scope="module")
def with_smoke_test(tmp_path_factory) -> list[render.Resource]:
    root = tmp_path_factory.mktemp("smoke-component")
    copy_tree(root)
    k = root / APP / "app" / "kustomization.yaml"
    k.write_text(k.read_text() + "components:\n  - ../../../../components/smoke-test\n")
    return render.render_path(APP_PATH, root=root)


def test_smoke_job_goes_through_the_service_with_the_apps_image(with_smoke_test) -> None:
    job = only(with_smoke_test, "Job")
    deployment = only(with_smoke_test, "Deployment")
    pod = job["spec"]["template"]["spec"]
    (smoke,) = pod["containers"]
    (app,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    assert smoke["image"] == app["image"], "keep the Job's image line equal to the app's"
    command = smoke["command"]
    url = command[command.index("--url") + 1]
    (service,) = [r.doc for r in with_smoke_test if r.kind == "Service" and r.name == deployment["metadata"]["name"]]
    assert (
        url
        == f"http://{service['metadata']['name']}.ai-services.svc.cluster.local:{service['spec']['ports'][0]['port']}"
    )
    (key,) = [e for e in smoke["env"] if e["name"] == "KOKORO_API_KEYS"]
    assert key["valueFrom"]["secretKeyRef"] == {
        "name": "kokoro-api-keys",
        "key": "KOKORO_API_KEYS",
        "optional": True,
    }
    # the script is this repository's smoke test, untouched by Flux's substitution
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    script = next(
        r.doc for r in with_smoke_test if r.kind == "ConfigMap" and r.name == volume["configMap"]["name"]
    )
    assert script["data"]["smoke_test.py"] == (REPO / "scripts" / "smoke_test.py").read_text()
    assert script["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/substitute"] == "disabled"
    assert job["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/force"] == "enabled"


def test_smoke_script_checks_synthesize_and_a_batch() -> None:
    text = (REPO / "scripts" / "smoke_test.py").read_text()
    assert re.search(r'rep\.run\("synthesize"', text) and re.search(r'rep\.run\("batch"', text)


# --------------------------------------------------------------------------- HTTPRoute component


def test_httproute_component_replaces_the_virtualservice(tmp_path) -> None:
    root = copy_tree(tmp_path / "repo")
    k = root / APP / "app" / "kustomization.yaml"
    k.write_text(k.read_text() + "components:\n  - ../../../../components/httproute\n")
    resources = render.render_path(APP_PATH, root=root)
    assert not [r for r in resources if r.kind == "VirtualService"], "never a VirtualService and an HTTPRoute"
    route = only(resources, "HTTPRoute")
    (service,) = [r.doc for r in resources if r.kind == "Service" and r.name == "kokoro-api"]
    (parent,) = route["spec"]["parentRefs"]
    assert (parent["group"], parent["kind"], parent["name"]) == ("", "Service", service["metadata"]["name"])
    speech, rest = route["spec"]["rules"]
    assert speech["matches"] == [{"path": {"type": "Exact", "value": "/v1/audio/speech"}}]
    assert "timeouts" not in speech, "the streaming route must have no timeout"
    assert rest["timeouts"] == {"request": "90s"}, (
        "no backendRequest: without retry it bounds the whole answer"
    )


# --------------------------------------------------------------------------- image pinning


def test_pin_image_rewrites_every_app_image_line_and_refuses_placeholders(tmp_path) -> None:
    import subprocess
    import sys

    root = copy_tree(tmp_path / "repo")
    script = [sys.executable, str(REPO / "scripts" / "pin_image.py"), "--root", str(root)]
    zero = subprocess.run(
        [*script, "--digest", "sha256:" + "0" * 64], capture_output=True, text=True, check=False
    )
    assert zero.returncode == 1 and "not all zero" in zero.stderr
    short = subprocess.run([*script, "--digest", "sha256:abc"], capture_output=True, text=True, check=False)
    assert short.returncode == 1
    digest = "sha256:" + "3f" * 32
    ok = subprocess.run(
        [*script, "--image", "ghcr.io/me/kokoro-api", "--tag", "0.2.0", "--digest", digest],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    k = root / APP / "app" / "kustomization.yaml"
    k.write_text(k.read_text() + "components:\n  - ../../../../components/smoke-test\n")
    resources = render.render_path(APP_PATH, root=root)
    images = {c["image"] for r in resources if r.kind in ("Deployment", "Job")
              for c in r.doc["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert images == {f"ghcr.io/me/kokoro-api:0.2.0@{digest}"}


def test_renovate_pins_the_app_image_by_digest() -> None:
    """Renovate's kubernetes and flux managers read the tree; the app image gets tag@digest pins."""
    config = json.loads((REPO / ".renovaterc.json").read_text())
    for manager in ("kubernetes", "flux"):
        (pattern,) = config[manager]["managerFilePatterns"]
        assert re.search(pattern.strip("/"), f"{APP}/app/deployment.yaml"), manager
    (rule,) = [r for r in config["packageRules"] if r.get("pinDigests")]
    (name_pattern,) = rule["matchPackageNames"]
    deployment = (REPO / APP / "app" / "deployment.yaml").read_text()
    image = re.search(r"image: (\S+?):", deployment).group(1)
    assert re.search(name_pattern.strip("/"), image), (name_pattern, image)
