"""The single-host path under podman: deploy/compose/compose.yaml with podman-compose, running the image the
session built (conftest.py `podman_image`, shared with test_podman.py).

* The default profile comes up from a `.env` made of `.env.example` (image tag, port and an API key
  changed), the container runs as the Deployment's does (uid 10001, read-only root, capped tmpfs, no
  capabilities, restart policy, limits, env), its healthcheck passes, the API key from `.env` is enforced,
  scripts/smoke_test.py passes against it, a saved voice mix survives `down` + `up` (the upgrade path), and
  `down -v` leaves nothing behind.
* A `.env` with bad values: the container exits 2 and `podman-compose logs` names each bad variable, its
  value and the reason, without a traceback.

The tls profile (Caddy) is not run: no Caddy image can be pulled here; test_compose_file.py validates it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import decode, rms

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
SMOKE = ROOT / "scripts" / "smoke_test.py"
SERVICE = "kokoro"

pytestmark = pytest.mark.e2e


def podman_env() -> dict[str, str]:
    conf = os.environ.get("CONTAINERS_CONF", str(ROOT / "image" / "containers.conf"))
    return {**os.environ, "CONTAINERS_CONF": conf}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = ["podman", "--runtime", "runc", *args]
    proc = subprocess.run(cmd, env=podman_env(), capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr}"
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """compose.yaml and Caddyfile copied into a directory with its own .env, under a project name of its own
    (so a run never touches an operator's `kokoro-api` project, nor another run's)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.dir = workdir
        self.project = f"kokoro-compose-test-{os.getpid()}-{secrets.token_hex(3)}"
        shutil.copy(COMPOSE_DIR / "compose.yaml", workdir)
        shutil.copy(COMPOSE_DIR / "Caddyfile", workdir)
        (workdir / ".env").write_text(env_from_example(env))

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "podman_compose", "--podman-args=--runtime runc", "-p", self.project]
        proc = subprocess.run(
            [*cmd, *args], cwd=self.dir, env=podman_env(), capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, f"podman-compose {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def containers(self, service: str | None = None) -> list[str]:
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        out = podman("ps", "-a", *filters, "--format", "{{.ID}}").stdout
        return out.split()

    def container(self) -> str:
        ids = self.containers(SERVICE)
        assert len(ids) == 1, f"expected one {SERVICE} container, found {ids}"
        return ids[0]

    def logs(self) -> str:
        proc = self.compose("logs", SERVICE, check=False, timeout=60)
        return proc.stdout + proc.stderr

    def inspect(self) -> dict:
        return json.loads(podman("inspect", self.container()).stdout)[0]

    def wait_ready(self, url: str, timeout: float = 600) -> float:
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < timeout:
            state = self.inspect()["State"]
            if state["Status"] in ("exited", "stopped") and not state.get("Restarting"):
                stopped = f"{state['Status']}, exit {state['ExitCode']}"
                pytest.fail(f"the container stopped ({stopped}):\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(2)
        pytest.fail(f"/readyz not 200 within {timeout:.0f}s (last: {last}):\n{self.logs()}")

    def down(self) -> None:
        # podman 4.3 can restart a crash-looping container between podman-compose's `stop` and `rm`
        # (restart policy `always`, no back-off); a second `down` then removes it.
        for attempt in range(3):
            self.compose("down", "-v", check=False, timeout=600)
            if not self.containers():
                return
            print(f"podman-compose down left {self.containers()} (attempt {attempt + 1}); again")


def env_from_example(overrides: dict[str, str]) -> str:
    """.env.example with some values replaced (every override must name a line of it)."""
    lines, seen = [], set()
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        key = line.split("=", 1)[0]
        if "=" in line and not line.startswith("#") and key in overrides:
            line, _ = f"{key}={overrides[key]}", seen.add(key)
        lines.append(line)
    extra = set(overrides) - seen
    lines += [f"{k}={overrides[k]}" for k in sorted(extra)]
    return "\n".join(lines) + "\n"


def request(url: str, method: str = "GET", body: dict | None = None, key: str | None = None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def deployment_env() -> dict[str, str]:
    import yaml

    doc = yaml.safe_load((ROOT / "kubernetes/apps/ai-services/kokoro-api/app/deployment.yaml").read_text())
    env = doc["spec"]["template"]["spec"]["containers"][0]["env"]
    # KOKORO_PEERS names the cluster's other replicas: one machine has none (test_compose_file.CLUSTER_ONLY)
    return {e["name"]: str(e["value"]) for e in env if "value" in e and e["name"] != "KOKORO_PEERS"}


@pytest.mark.timeout(1800)
def test_compose_runs_the_image_as_the_deployment_does_and_passes_the_smoke_test(podman_image, tmp_path):
    port, key = free_port(), secrets.token_hex(16)
    env = {"KOKORO_IMAGE": podman_image, "KOKORO_HOST_PORT": str(port), "KOKORO_API_KEYS": key}
    stack = Stack(tmp_path, env)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        stack.compose("up", "-d")
        ready_s = stack.wait_ready(url)
        print(f"compose up -d to /readyz: {time.monotonic() - t0:.0f} s")

        # --- the container as the Deployment runs it
        info = stack.inspect()
        assert info["ImageName"] == podman_image
        host = info["HostConfig"]
        assert info["Config"]["User"] == "10001:10001"
        assert host["ReadonlyRootfs"] is True
        assert host["RestartPolicy"]["Name"] == "always"
        assert host["Memory"] == 2 * 1024**3 and host["NanoCpus"] == 2 * 10**9
        assert "no-new-privileges" in " ".join(host["SecurityOpt"])
        running = dict(item.split("=", 1) for item in info["Config"]["Env"])
        for name, value in deployment_env().items():
            assert running.get(name) == value, f"{name}: {running.get(name)!r}, the Deployment says {value!r}"
        assert running["KOKORO_API_KEYS"] == key
        assert running["KOKORO_VOICES_DIR"] == "/var/lib/kokoro/voices"
        cid = stack.container()
        assert podman("exec", cid, "id", "-u").stdout.strip() == "10001"
        refused = podman("exec", cid, "sh", "-c", "touch /probe", check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr
        mounts = podman("exec", cid, "cat", "/proc/mounts").stdout
        sizes = dict(re.findall(r"^tmpfs (/tmp(?:/audio)?) tmpfs \S*size=(\d+k)", mounts, re.MULTILINE))
        assert sizes == {"/tmp": f"{1024 * 1024}k", "/tmp/audio": f"{640 * 1024}k"}, mounts
        status = podman("exec", cid, "grep", "-E", "^(CapEff|NoNewPrivs):", "/proc/1/status").stdout
        assert re.search(r"CapEff:\s+0+\n", status) and re.search(r"NoNewPrivs:\s+1", status), status
        # the compose healthcheck itself (podman runs it on a systemd timer; run once by hand here)
        health = podman("healthcheck", "run", cid, check=False)
        assert health.returncode == 0, f"healthcheck failed: {health.stdout}{health.stderr}"

        # --- the API key from .env is enforced (the lists stay readable, KOKORO_PUBLIC_LISTS); health stays open
        empty = {"input": ""}  # 401 without the key; with it, the body is checked: 400
        assert request(f"{url}/v1/audio/speech", "POST", empty)[0] == 401
        assert request(f"{url}/v1/audio/speech", "POST", empty, key=key)[0] == 400
        assert request(f"{url}/v1/audio/voices")[0] == 200

        # --- the smoke test, with the key
        report = tmp_path / "smoke.json"
        smoke = subprocess.run(
            [sys.executable, str(SMOKE), "--url", url, "--api-key", key, "--json", str(report)], timeout=900
        )
        checks = json.loads(report.read_text())["checks"]
        failed = [c for c in checks if c["status"] != "pass"]
        assert smoke.returncode == 0 and not failed, f"{failed}\n{stack.logs()[-3000:]}"
        assert len(checks) >= 12

        # --- a saved mix lives in the named volume: it survives recreating the container (an upgrade)
        mix = {"name": "compose-mix", "mix": "af_bella(2)+af_sky(1)"}
        assert request(f"{url}/v1/audio/voices", "POST", mix, key)[0] == 201
        first = stack.container()
        stack.compose("down")  # keeps named volumes, as an upgrade does
        assert stack.containers() == []
        stack.compose("up", "-d")
        assert stack.container() != first  # a new container, the same volume
        stack.wait_ready(url)
        status, body = request(f"{url}/v1/audio/voices", key=key)
        assert status == 200 and {"name": "compose-mix", "mix": mix["mix"]}.items() <= next(
            s for s in json.loads(body)["saved"] if s["name"] == "compose-mix"
        ).items(), body
        speech = {"model": "kokoro", "input": "Saved mixes outlive the container.", "voice": "compose-mix",
                  "response_format": "wav", "stream": False}
        status, audio = request(f"{url}/v1/audio/speech", "POST", speech, key)
        assert status == 200, audio[:500]
        samples, rate = decode(audio)
        assert 1.0 < len(samples) / rate < 6.0 and rms(samples) > 0.02
        print(f"first start to ready {ready_s:.0f} s; smoke checks {len(checks)} passed")
    finally:
        stack.down()
    assert stack.containers() == [], "podman-compose down left containers"
    volumes = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [v for v in volumes if v.startswith(stack.project)], volumes


@pytest.mark.timeout(600)
def test_a_bad_value_in_env_stops_the_service_with_a_message_naming_it(podman_image, tmp_path):
    port = free_port()
    bad = {"KOKORO_IMAGE": podman_image, "KOKORO_HOST_PORT": str(port),
           "KOKORO_MAX_QUEUE_WAIT_S": "ten", "KOKORO_WORKERS": "0"}
    stack = Stack(tmp_path, bad)
    try:
        stack.compose("up", "-d")  # the container is created and started; the service refuses to run
        deadline, logs = time.monotonic() + 300, ""
        while time.monotonic() < deadline and "invalid settings" not in logs:
            time.sleep(2)
            logs = stack.logs()
        assert "kokoro-api: invalid settings (environment variables):" in logs, logs
        # one line per bad variable: its name, the value from .env and the reason
        assert "KOKORO_MAX_QUEUE_WAIT_S='ten': Input should be a valid number" in logs, logs
        assert "KOKORO_WORKERS='0': Input should be greater than or equal to 1" in logs, logs
        assert "Traceback" not in logs and "KOKORO_HOST_PORT" not in logs, logs
        # it exited with code 2; the restart policy keeps trying (podman restarts at once, docker backs off)
        cid = stack.container()
        assert stack.inspect()["RestartCount"] >= 1
        died = podman("events", "--stream=false", "--since", "10m", "--filter", f"container={cid}",
                      "--filter", "event=died", "--format", "{{.ContainerExitCode}}").stdout.split()
        assert died and set(died) == {"2"}, died
        with pytest.raises((urllib.error.URLError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
    finally:
        stack.down()
    assert stack.containers() == []
