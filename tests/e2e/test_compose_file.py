"""Fast, static checks of deploy/compose (no podman needed): compose.yaml runs the image the way the rendered
Deployment does (env, user, read-only root, writable paths, probes, grace period, resources), .env.example
is a valid configuration of the service, and both docker compose's loader (compose-go, built by ./dev as
`compose-config`: the compose specification's schema, interpolation, profiles) and podman-compose accept
the file with and without the tls profile. The running stack is tested in test_compose.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kokoro_api.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
INTERPOLATED = re.compile(r"^\$\{(\w+):-(.*)\}$")


@pytest.fixture(scope="module")
def deployment() -> dict:
    sys.path.insert(0, str(ROOT / "scripts"))
    import render

    return next(r.doc for r in render.render_path("ai-services/kokoro-api") if r.kind == "Deployment")


@pytest.fixture(scope="module")
def container(deployment) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture(scope="module")
def service() -> dict:
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())["services"]["kokoro"]


def example_env() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (COMPOSE_DIR / ".env.example").read_text().splitlines())
    return {k.strip(): v.strip() for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


def default_of(value: str) -> str:
    """`${NAME:-default}` -> default (the value compose uses when .env lacks NAME); a literal as it is."""
    m = INTERPOLATED.match(str(value))
    return m.group(2) if m else str(value)


def quantity(value: str) -> int:
    """Kubernetes (1200Mi, 2Gi) or compose (1200m, 2g) memory as bytes; both are binary units."""
    m = re.fullmatch(r"(\d+)\s*([KMG])i?", str(value), re.IGNORECASE)
    assert m, value
    return int(m.group(1)) * 1024 ** "KMG".index(m.group(2).upper()) * 1024


# Settings of the cluster's replicas that a single host has no use for: KOKORO_PEERS names the other pods
# (through the headless Service); one machine runs one instance.
CLUSTER_ONLY = {"KOKORO_PEERS"}


def test_env_is_the_deployments(container, service):
    env = service["environment"]
    for item in container["env"]:
        if item["name"] in CLUSTER_ONLY:
            assert item["name"] not in env, f"{item['name']} means nothing on one machine"
        elif "value" in item:
            assert item["name"] in env, f"{item['name']} of the Deployment is missing from compose.yaml"
            assert default_of(env[item["name"]]) == str(item["value"]), item["name"]
            # the tunable ones default to the Deployment's value in .env.example as well
            if INTERPOLATED.match(str(env[item["name"]])):
                assert example_env()[item["name"]] == str(item["value"]), item["name"]
        else:  # from the Secret (optional): an .env line
            assert item["name"] in example_env(), f"{item['name']} is not in .env.example"
    assert service["env_file"] == ".env"


def test_saved_mixes_live_where_the_saved_voices_component_puts_them(service):
    patch = yaml.safe_load((ROOT / "kubernetes/components/saved-voices/deployment-patch.yaml").read_text())
    env = patch["spec"]["template"]["spec"]["containers"][0]["env"]
    path = next(e["value"] for e in env if e["name"] == "KOKORO_VOICES_DIR")
    assert service["environment"]["KOKORO_VOICES_DIR"] == path
    assert f"voices:{path}" in service["volumes"]
    # the image owns that directory for the service's user, so a new named volume starts writable
    dockerfile = (ROOT / "image" / "Dockerfile").read_text()
    assert re.search(rf'install -d -o "\$UID" -g "\$UID" [^\n]*{re.escape(path)}', dockerfile)


def test_hardening_probes_grace_and_resources_are_the_deployments(deployment, container, service):
    pod = deployment["spec"]["template"]["spec"]
    sc = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert service["user"] == f"{sc['runAsUser']}:{sc['runAsGroup']}"
    assert service["read_only"] is sc["readOnlyRootFilesystem"] is True
    assert service["cap_drop"] == container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["restart"] == "always"  # podman-restart.service starts "always" at boot
    # the Deployment's writable volumes are size-capped tmpfs mounts here
    tmpfs = dict(entry.split(":", 1) for entry in service["tmpfs"])
    assert set(tmpfs) == {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/tmp/audio"}
    assert all(re.search(r"(^|,)size=\d+[kmg](,|$)", opts) for opts in tmpfs.values()), tmpfs
    audio_cap = quantity(re.search(r"size=(\w+)", tmpfs["/tmp/audio"]).group(1))
    audio_dir_max_mb = Settings.model_fields["audio_dir_max_mb"].default
    assert audio_cap > audio_dir_max_mb * 1024 * 1024, "the tmpfs must hold KOKORO_AUDIO_DIR_MAX_MB"
    # healthcheck: the readiness endpoint; its start period covers the startupProbe's 5 minutes
    check = service["healthcheck"]
    probe = container["startupProbe"]
    assert container["readinessProbe"]["httpGet"]["path"] == probe["httpGet"]["path"] == "/readyz"
    assert any("/readyz" in part for part in check["test"]) and check["test"][0] == "CMD"
    start = int(check["start_period"].rstrip("m")) * 60
    assert start >= probe["periodSeconds"] * probe["failureThreshold"]
    assert service["stop_grace_period"] == f"{pod['terminationGracePeriodSeconds']}s"
    # resources: limits and requests (reservations)
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    res = service["deploy"]["resources"]
    assert float(res["limits"]["cpus"]) == float(limits["cpu"])
    assert quantity(res["limits"]["memory"]) == quantity(limits["memory"])
    assert float(res["reservations"]["cpus"]) == float(requests["cpu"])
    assert quantity(res["reservations"]["memory"]) == quantity(requests["memory"])
    # published on this machine only unless .env says otherwise
    assert service["ports"] == ["${KOKORO_BIND:-127.0.0.1}:${KOKORO_HOST_PORT:-8880}:8880"]


def test_env_example_is_a_valid_configuration(monkeypatch):
    env = example_env()
    for key in [k for k in os.environ if k.startswith("KOKORO_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    Settings()  # raises on any bad value
    compose_only = {"KOKORO_IMAGE", "KOKORO_BIND", "KOKORO_HOST_PORT", "KOKORO_DOMAIN"}
    settings_vars = {f"KOKORO_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in env if k.startswith("KOKORO_")} - settings_vars - compose_only
    assert not unknown, f".env.example sets variables the service does not know: {unknown}"
    assert not (compose_only & settings_vars), "a compose-only variable collides with a setting"
    assert env["KOKORO_API_KEYS"] == "" and env["KOKORO_CORS_ORIGINS"] == ""  # shown, open by default


@pytest.mark.parametrize("profile", [None, "tls"])
def test_podman_compose_accepts_the_file(tmp_path, profile):
    shutil.copy(COMPOSE_DIR / "compose.yaml", tmp_path)
    shutil.copy(COMPOSE_DIR / "Caddyfile", tmp_path)
    shutil.copy(COMPOSE_DIR / ".env.example", tmp_path / ".env")
    args = [sys.executable, "-m", "podman_compose"] + (["--profile", profile] if profile else []) + ["config"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    services = config["services"]
    assert services["kokoro"]["image"] == example_env()["KOKORO_IMAGE"]
    if profile == "tls":
        caddy = services["caddy"]
        assert caddy["environment"]["KOKORO_DOMAIN"] == example_env()["KOKORO_DOMAIN"]
        assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
        assert {"80:80", "443:443"} <= set(caddy["ports"])
        caddyfile = (COMPOSE_DIR / "Caddyfile").read_text()
        assert "{$KOKORO_DOMAIN}" in caddyfile and "reverse_proxy kokoro:8880" in caddyfile
        assert "flush_interval -1" in caddyfile  # streamed audio is not buffered
    else:
        assert "caddy" not in services


def compose_config() -> str:
    """tools/compose-config (./dev builds it into the venv's bin)."""
    for candidate in (os.environ.get("COMPOSE_CONFIG"), shutil.which("compose-config"),
                      str(Path(sys.executable).parent / "compose-config")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("compose-config is not built: ./dev test builds it (cd tools/compose-config && go build)")


def project_dir(tmp_path: Path, env: str) -> Path:
    shutil.copy(COMPOSE_DIR / "compose.yaml", tmp_path)
    shutil.copy(COMPOSE_DIR / "Caddyfile", tmp_path)
    (tmp_path / ".env").write_text(env)
    return tmp_path


@pytest.mark.parametrize("profile", [None, "tls"])
def test_docker_compose_loader_accepts_the_file(tmp_path, profile):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOKORO_", "COMPOSE_"))}
    cwd = project_dir(tmp_path, (COMPOSE_DIR / ".env.example").read_text())
    args = [compose_config()] + (["--profile", profile] if profile else [])
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    assert set(services) == ({"kokoro", "caddy"} if profile else {"kokoro"})
    kokoro = services["kokoro"]
    assert kokoro["image"] == example_env()["KOKORO_IMAGE"]
    port = kokoro["ports"][0]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8880", 8880), port
    assert kokoro["read_only"] is True and kokoro["user"] == "10001:10001"
    assert kokoro["tmpfs"] == ["/tmp:size=1g,mode=1777", "/tmp/audio:size=640m,mode=1777"]
    assert kokoro["deploy"]["resources"]["limits"]["memory"] == str(2 * 1024**3)
    assert kokoro["environment"]["KOKORO_MAX_QUEUE_WAIT_S"] == "10"  # the Deployment's, through .env
    if profile:
        assert services["caddy"]["environment"]["KOKORO_DOMAIN"] == example_env()["KOKORO_DOMAIN"]


def test_docker_compose_loader_rejects_a_bad_port_in_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOKORO_", "COMPOSE_"))}
    example = (COMPOSE_DIR / ".env.example").read_text()
    bad = re.sub(r"(?m)^KOKORO_HOST_PORT=.*$", "KOKORO_HOST_PORT=eighty", example)
    proc = subprocess.run([compose_config()], cwd=project_dir(tmp_path, bad), env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "eighty" in proc.stderr, proc.stderr
