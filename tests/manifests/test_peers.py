"""How the replicas find each other (docs/api.md, "Several replicas"): a headless Service over the same
pods, KOKORO_PEERS naming it with the container's port, and the network policy letting the pods in."""

from __future__ import annotations

from .conftest import only
from .test_invariants import env_value


def test_peers_service_is_headless_over_the_same_pods(peers_service, service, deployment, container) -> None:
    spec = peers_service["spec"]
    assert spec["clusterIP"] == "None", "only a headless Service's name resolves to every pod"
    assert spec["selector"] == service["spec"]["selector"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"].items() <= pod_labels.items()
    # not in the waypoint (no retries on lookups), not scraped a second time by the ServiceMonitor
    assert "istio.io/use-waypoint" not in peers_service["metadata"].get("labels", {})
    assert not spec.get("publishNotReadyAddresses"), "a loading pod has nothing to give"


def test_kokoro_peers_names_the_headless_service_and_the_container_port(peers_service, container) -> None:
    from kokoro_api.peers import parse_targets

    (target,) = parse_targets(env_value(container, "KOKORO_PEERS") or "")
    assert target == (peers_service["metadata"]["name"], container["ports"][0]["containerPort"])


def test_servicemonitor_does_not_select_the_peers_service(rendered, peers_service) -> None:
    monitor = only(rendered, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= peers_service["metadata"]["labels"].items()


def test_network_policy_lets_the_replicas_reach_each_other(rendered, deployment, container) -> None:
    cnp = only(rendered, "CiliumNetworkPolicy")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    namespace = deployment["metadata"]["namespace"]
    port = str(container["ports"][0]["containerPort"])
    for rule in cnp["spec"]["ingress"]:
        for sel in rule.get("fromEndpoints", []):
            labels = dict(sel["matchLabels"])
            in_namespace = labels.pop("io.kubernetes.pod.namespace", None) == namespace
            if in_namespace and labels and labels.items() <= pod_labels.items():
                ports = {p["port"] for tp in rule["toPorts"] for p in tp["ports"]}
                assert {port, "15008"} <= ports  # plain HTTP, and HBONE in ambient mode
                return
    raise AssertionError("no ingress rule admits the app's own pods")
