"""The timeout decision (docs/gitops.md, "Timeouts") and the circuit-breaking numbers, as tests.

* Every route: retries attempts 3, perTryTimeout 30s, retryOn 5xx,reset,connect-failure,refused-stream.
* Non-streamed responses fit one 30 s attempt: the service refuses non-streamed inputs above
  ``max_unstreamed_chars``, and that many characters synthesize within perTryTimeout at the slowest
  real-time factor we accept. So a slow request is never retried three times.
* Only ``/v1/audio/speech`` streams. It has no route timeout (Istio's default: disabled), so a stream still
  sending after 90 s is not cut; perTryTimeout only bounds the wait for the first byte (Envoy ignores it
  once the response has started), and a started stream is never retried.
* Every other route keeps the overall 90 s timeout (three attempts' worth).
"""

from __future__ import annotations


from .test_invariants import duration_seconds, effective_setting, env_value

RETRY_ON = {"5xx", "reset", "connect-failure", "refused-stream"}
STREAMING_PATHS = {"/v1/audio/speech"}
# Speech at speed 1.0: 15.2 characters per audio second (measured, docs/gitops.md); rounded down.
CHARS_PER_AUDIO_SECOND = 15.0
# Real-time factor (synthesis seconds per audio second) of one worker with one thread that the numbers
# must hold for: kokoro-onnx measured 1.15 on a quiet 2-vCPU machine, this engine 1.9 on a busy one
# (docs/gitops.md). Re-derive the caps in deployment.yaml when the benchmark moves this.
RTF_BUDGET = 1.5


def routes(virtualservice: dict) -> dict[str, dict]:
    return {route["name"]: route for route in virtualservice["spec"]["http"]}


def test_every_route_retries_the_same_way(virtualservice) -> None:
    for name, route in routes(virtualservice).items():
        retries = route["retries"]
        assert retries["attempts"] == 3, name
        assert duration_seconds(retries["perTryTimeout"]) == 30, name
        assert set(retries["retryOn"].split(",")) == RETRY_ON, name


def test_durations_parse_and_pass_istios_rule(virtualservice, destinationrule) -> None:
    """Istio's CRD validates durations with CEL (>= 1ms), which kubeconform does not evaluate."""
    values = []
    for route in virtualservice["spec"]["http"]:
        values.append(route["retries"]["perTryTimeout"])
        if "timeout" in route:
            values.append(route["timeout"])
    outlier = destinationrule["spec"]["trafficPolicy"]["outlierDetection"]
    values += [outlier["interval"], outlier["baseEjectionTime"]]
    for value in values:
        assert duration_seconds(value) >= 0.001, value


def test_only_the_streaming_route_has_no_overall_timeout(virtualservice) -> None:
    table = routes(virtualservice)
    streaming = [
        r for r in table.values() if {m["uri"].get("exact") for m in r.get("match", [])} & STREAMING_PATHS
    ]
    assert len(streaming) == 1 and "timeout" not in streaming[0], "a stream must not be cut at 90 s"
    for route in table.values():
        if route is streaming[0]:
            continue
        assert duration_seconds(route["timeout"]) == 90, route["name"]
        assert duration_seconds(route["timeout"]) >= duration_seconds(route["retries"]["perTryTimeout"])
    # the catch-all route comes last, so the streaming route is reachable
    assert "match" not in virtualservice["spec"]["http"][-1]


def per_try_timeout(virtualservice: dict) -> float:
    return min(duration_seconds(r["retries"]["perTryTimeout"]) for r in virtualservice["spec"]["http"])


def test_non_streamed_work_fits_one_attempt(virtualservice, container) -> None:
    """Queue wait + the longest non-streamed synthesis <= perTryTimeout: the mesh never cuts (and then
    repeats on another pod) a request that is merely slow."""
    per_try = per_try_timeout(virtualservice)
    max_chars = effective_setting(container, "max_unstreamed_chars")
    assert max_chars <= effective_setting(container, "max_input_chars")
    # a batch answers when all its items are done, synthesized one after another in one worker slot
    max_chars = max(max_chars, effective_setting(container, "max_batch_chars"))
    queue = effective_setting(container, "max_queue_wait_s")
    synthesis = max_chars / CHARS_PER_AUDIO_SECOND * RTF_BUDGET
    assert queue + synthesis <= per_try, (
        f"{queue:.0f} s queue + {max_chars} characters (~{synthesis:.0f} s at RTF {RTF_BUDGET}) exceed "
        f"perTryTimeout {per_try:.0f} s: a slow request would be retried and its work repeated"
    )


def test_non_streamed_audio_is_capped_for_every_input(virtualservice, container) -> None:
    """Characters alone do not bound the work: 200 digits or emoji read out make ~10x the audio of 200
    characters of prose. The service's audio ceiling (KOKORO_MAX_UNSTREAMED_AUDIO_S, checked before each
    chunk runs by a token estimate that errs by at most AUDIO_ESTIMATE_SLACK) bounds it for any input."""
    from kokoro_api.synthesis import SECONDS_PER_TOKEN

    raw = env_value(container, "KOKORO_MAX_UNSTREAMED_AUDIO_S")
    assert raw is not None, "the Deployment must cap the audio of non-streamed responses"
    audio_estimate_slack = 0.065 / SECONDS_PER_TOKEN  # the slowest speech measured per token (docs/api.md)
    worst = float(raw) * audio_estimate_slack * RTF_BUDGET
    queue = effective_setting(container, "max_queue_wait_s")
    assert queue + worst <= per_try_timeout(virtualservice), (queue, worst)
    # ... and it does not refuse the prose the character limit lets through (200 chars ~ 13 s at 15/s)
    assert float(raw) >= 0.9 * effective_setting(container, "max_unstreamed_chars") / CHARS_PER_AUDIO_SECOND


def test_queue_wait_ends_before_the_mesh_gives_up(virtualservice, container) -> None:
    """A request that cannot get a worker gets the service's own 503 (retried elsewhere at once),
    not a mesh timeout."""
    assert effective_setting(container, "max_queue_wait_s") < per_try_timeout(virtualservice)


def test_grace_period_outlasts_the_drain(deployment, container) -> None:
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = effective_setting(container, "graceful_timeout_s")
    assert grace > drain, "Kubernetes would kill the drain"
    longest_stream = (
        effective_setting(container, "max_queue_wait_s")
        + effective_setting(container, "max_input_chars") / CHARS_PER_AUDIO_SECOND * RTF_BUDGET
    )
    assert drain >= longest_stream, f"a {longest_stream:.0f} s stream in flight at SIGTERM would be cut"
    assert grace > 90, "and longer than any non-streamed request can take through the mesh"


def test_connection_pool_matches_the_services_admission(destinationrule, deployment, container) -> None:
    """Envoy's circuit breakers count per upstream cluster (all pods together) in each waypoint, so the
    mesh admits exactly what the pods admit: replicas x (workers + max_queue)."""
    per_pod = effective_setting(container, "workers") + effective_setting(container, "max_queue")
    expected = deployment["spec"]["replicas"] * per_pod
    pool = destinationrule["spec"]["trafficPolicy"]["connectionPool"]
    assert pool["tcp"]["maxConnections"] == expected
    assert pool["http"]["http2MaxRequests"] == expected
    assert pool["http"]["http1MaxPendingRequests"] == expected


def test_outlier_detection_ejects_on_connect_failures_not_on_the_apps_503(
    destinationrule, deployment
) -> None:
    """The app answers `503 Overloaded` when its queue is full: back-pressure from a healthy pod. Envoy's
    5xx counter and its gateway-error counter (502/503/504) would both eject that pod for 30 s, halving
    capacity under load. Only locally originated failures (connect failure, reset, timeout) may eject."""
    outlier = destinationrule["spec"]["trafficPolicy"]["outlierDetection"]
    assert outlier.get("splitExternalLocalOriginErrors") is True, "local-origin errors must count apart"
    assert 1 <= outlier["consecutiveLocalOriginFailures"] <= 10
    # Istio's default for consecutive5xxErrors is 5 when outlierDetection is set: it must be 0 explicitly
    assert outlier.get("consecutive5xxErrors") == 0, "5xx responses (the app's 503) must not eject"
    assert outlier.get("consecutiveGatewayErrors", 0) == 0, "502/503/504 responses must not eject"
    replicas = deployment["spec"]["replicas"]
    assert outlier["maxEjectionPercent"] * replicas // 100 < replicas, "some pod must stay in rotation"
