"""Invariants of the rendered app: what Flux applies must fit together and fit the service."""

from __future__ import annotations

import re

import pytest
import render  # scripts/ is on the path (tests/manifests/conftest.py)

from .conftest import only

NAMESPACE = "ai-services"
SECURE_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+$")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def duration_seconds(value: str) -> float:
    """A Go duration (what Istio's CEL rule `duration(self)` accepts) in seconds."""
    assert isinstance(value, str) and _DURATION.match(value), f"{value!r} is not a duration"
    return sum(
        float(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)", value)
    )


def quantity_bytes(value: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(value))
    assert match, value
    return float(match.group(1)) * units.get(match.group(2), 1)


def env_value(container: dict, name: str) -> str | None:
    for item in container.get("env", []):
        if item["name"] == name:
            return item.get("value")
    return None


def effective_setting(container: dict, field: str):
    """What the pod runs with: the Deployment's KOKORO_* env if set, else the Settings default."""
    from kokoro_api.config import Settings

    info = Settings.model_fields[field]
    raw = env_value(container, f"KOKORO_{field.upper()}")
    if raw is None:
        return info.default
    return type(info.default)(raw)


# --------------------------------------------------------------------------- wiring


def test_everything_lands_in_the_app_namespace(rendered) -> None:
    for resource in rendered:
        assert resource.namespace == NAMESPACE, f"{resource.kind}/{resource.name} in {resource.namespace}"


def test_service_selector_matches_pod_labels(service, deployment) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector and selector.items() <= pod_labels.items()
    match_labels = deployment["spec"]["selector"]["matchLabels"]
    assert match_labels.items() <= pod_labels.items()


def test_pdb_and_policy_select_the_pods(rendered, deployment) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    name = deployment["metadata"]["name"]
    (pdb,) = [r.doc for r in rendered if r.kind == "PodDisruptionBudget" and r.name == name]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"], "the PDB would block every drain"
    cnp = only(rendered, "CiliumNetworkPolicy")
    assert cnp["spec"]["endpointSelector"]["matchLabels"].items() <= pod_labels.items()


def test_service_targets_a_declared_container_port(service, container) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http" and port["port"] == 8000
    target = port["targetPort"]
    assert target in ports or target in ports.values(), f"targetPort {target} not declared by the container"


def test_container_port_is_the_apps_default(container) -> None:
    from kokoro_api.config import DEFAULT_PORT

    assert [p["containerPort"] for p in container["ports"]] == [DEFAULT_PORT]
    assert env_value(container, "KOKORO_PORT") == str(DEFAULT_PORT)
    assert env_value(container, "KOKORO_HOST") == "0.0.0.0"


def test_virtualservice_and_destinationrule_point_at_the_service(
    service, virtualservice, destinationrule
) -> None:
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert virtualservice["spec"]["hosts"] == [host]
    assert destinationrule["spec"]["host"] == host
    service_ports = {p["port"] for p in service["spec"]["ports"]}
    for route in virtualservice["spec"]["http"]:
        for destination in route["route"]:
            assert destination["destination"]["host"] == host
            assert destination["destination"]["port"]["number"] in service_ports


def test_service_is_enrolled_in_the_waypoint(rendered, service) -> None:
    """In ambient mode only a waypoint applies HTTP retries, timeouts and circuit breaking."""
    waypoint = only(rendered, "Gateway")
    assert waypoint["spec"]["gatewayClassName"] == "istio-waypoint"
    assert {"name": "mesh", "port": 15008, "protocol": "HBONE"} in waypoint["spec"]["listeners"]
    assert service["metadata"]["labels"]["istio.io/use-waypoint"] == waypoint["metadata"]["name"]


def test_namespace_is_in_the_ambient_mesh(repo) -> None:
    import render

    (namespace,) = list(render.load_documents(repo / "kubernetes/apps/ai-services/namespace.yaml"))
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["istio.io/dataplane-mode"] == "ambient"


def test_network_policy_admits_mesh_and_monitoring_only(rendered, container) -> None:
    cnp = only(rendered, "CiliumNetworkPolicy")
    port = str(container["ports"][0]["containerPort"])
    admitted = {p["port"] for rule in cnp["spec"]["ingress"] for tp in rule["toPorts"] for p in tp["ports"]}
    assert admitted == {port, "15008"}, "only the app port and HBONE (15008) may be admitted"
    for rule in cnp["spec"]["ingress"]:
        assert "fromEntities" not in rule or set(rule["fromEntities"]) <= {"host"}, (
            "no world/cluster entities"
        )
        for cidr in rule.get("fromCIDR", []):
            assert cidr == "169.254.7.127/32", "the only CIDR is ambient's SNAT address for kubelet probes"


def test_servicemonitor_scrapes_metrics_on_the_service_port(rendered, service) -> None:
    monitor = only(rendered, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


# --------------------------------------------------------------------------- the app's routes


@pytest.fixture(scope="module")
def app_routes() -> tuple[set[str], set[str]]:
    """(OpenAPI paths, every mounted path) of the real app, built without loading the model."""
    from kokoro_api.app import create_app
    from kokoro_api.config import Settings

    app = create_app(Settings(voices_path="/nonexistent/voices.npz"))
    openapi_paths = set(app.openapi()["paths"])
    mounted = {getattr(route, "path", "") for route in app.routes}
    return openapi_paths, mounted


def test_probes_point_at_routes_the_app_serves(container, app_routes) -> None:
    openapi_paths, _ = app_routes
    probes = {
        kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == probes["startupProbe"]["path"] == "/readyz"
    port_names = {p["name"] for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
    for kind, probe in probes.items():
        assert probe["path"] in openapi_paths, f"{kind} path {probe['path']} is not in the app's OpenAPI"
        assert probe["port"] in port_names


def test_metrics_route_is_served(rendered, app_routes) -> None:
    openapi_paths, mounted = app_routes
    path = only(rendered, "ServiceMonitor")["spec"]["endpoints"][0]["path"]
    assert path in openapi_paths | mounted, f"the ServiceMonitor scrapes {path}, which the app does not serve"


# --------------------------------------------------------------------------- pod hardening


def test_emptydirs_for_tmp_and_audio(deployment, container) -> None:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for path in ("/tmp", "/tmp/audio"):
        assert path in mounts, f"no volume at {path}"
        volume = volumes[mounts[path]]
        assert "emptyDir" in volume and volume["emptyDir"].get("sizeLimit"), (
            f"{path}: emptyDir with a sizeLimit"
        )
    assert env_value(container, "KOKORO_AUDIO_DIR") == "/tmp/audio"
    assert env_value(container, "KOKORO_CACHE_DIR").startswith("/tmp/")


def test_audio_volume_is_larger_than_the_services_cap(deployment, container) -> None:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    limit = quantity_bytes(volumes[mounts["/tmp/audio"]]["emptyDir"]["sizeLimit"])
    assert effective_setting(container, "audio_dir_max_mb") * 2**20 < limit


def test_every_container_has_requests_and_limits(deployment) -> None:
    spec = deployment["spec"]["template"]["spec"]
    for c in spec["containers"] + spec.get("initContainers", []):
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"].get(section, {})), f"{c['name']}: {section}"


def test_security_context(deployment, container) -> None:
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001 and pod["runAsGroup"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    for key, value in SECURE_CONTAINER.items():
        assert ctx[key] is value, key
    assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx["capabilities"].get("add")
    assert ctx.get("privileged") in (None, False)
    assert ctx.get("runAsUser", pod["runAsUser"]) != 0
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_image_is_a_release_tag_with_no_placeholder_digest(container) -> None:
    """A semver tag the image workflow publishes; a digest, once Renovate or `task image:pin` adds it,
    is a real sha256 (the all-zero placeholder is refused by scripts/kubeconform.py too)."""
    pattern = r"[a-z0-9./-]+/kokoro-api:\d+\.\d+\.\d+(@sha256:(?P<hex>[0-9a-f]{64}))?"
    match = re.fullmatch(pattern, container["image"])
    assert match, container["image"]
    assert match.group("hex") != "0" * 64


def test_api_keys_come_from_an_optional_secret_applied_apart(repo, rendered, container) -> None:
    """The app reads the keys from an optional Secret that a second Flux Kustomization (the only one
    that decrypts) applies: with no age key in the cluster the app still deploys, with its API open."""
    (item,) = [e for e in container["env"] if e["name"] == "KOKORO_API_KEYS"]
    ref = item["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True
    assert not [r for r in rendered if r.kind == "Secret"], "the app's own render holds no Secret"
    kss = {ks.name: ks for ks in render.find_flux_kustomizations(repo)}
    keys = render.render_flux_kustomization(kss["kokoro-api-keys"], root=repo)
    (secret,) = [r.doc for r in keys if r.kind == "Secret"]
    assert secret["metadata"]["name"] == ref["name"]
    assert ref["key"] in secret.get("stringData", {}) | secret.get("data", {})
    docs = {d["metadata"]["name"]: d for f in render.yaml_files(repo / "kubernetes")
            for d in render.load_documents(f) if render.is_flux_kustomization(d)}  # fmt: skip
    decrypting = sorted(name for name, d in docs.items() if "decryption" in d["spec"])
    assert decrypting == ["kokoro-api-keys"], decrypting
    app_deps = docs["kokoro-api"]["spec"].get("dependsOn", [])
    assert not any(dep.get("name") == "kokoro-api-keys" for dep in app_deps)
