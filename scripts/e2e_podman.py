#!/usr/bin/env python3
"""End to end without a cluster: base image -> podman build -> the rendered Deployment under
`podman kube play` -> /readyz -> security checks -> smoke test -> `podman kube down`; then one synthesis in
the image with networking disabled (`--network none`: nothing is fetched at run time).

    scripts/e2e_podman.py                        # everything, with defaults
    scripts/e2e_podman.py --skip-build           # reuse localhost/kokoro-api:e2e
    scripts/e2e_podman.py --keep                 # leave the pod running (tear down with --down)
    scripts/e2e_podman.py --report e2e.json      # timings, image size, smoke results as JSON

What runs is what Flux applies: `scripts/render.py` renders kubernetes/apps/ai-services/kokoro-api the way
Flux does (kustomize build + postBuild substitution) with the image set to the local tag through a
kustomize overlay's `images:`. Only the Deployment is played. Two changes are made to the parsed Deployment
(never to YAML text) because podman is not a cluster, and both are printed:
  * `spec.replicas` -> 1 (podman creates one pod per replica, all on one host);
  * the container port gets `hostPort` (a free port) and `hostIP: 127.0.0.1`: podman kube play has no
    Service, so the port is published on the loopback address only.
The securityContext, resources, env, probes and volumes are left as rendered; docs/image.md lists the fields
podman ignores.

Needs root, Debian's podman/runc/debootstrap, kustomize, and a Python with PyYAML, numpy and soundfile/av.
Env: CONTAINERS_CONF (default image/containers.conf), KOKORO_VOICES_FILE (default: KOKORO_VOICES_PATH if it
is a file, else ../shared/kokoro/voices-v1.0-en.npz beside the repository).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = "ai-services/kokoro-api"
IMAGE = "localhost/kokoro-api:e2e"
BASE_IMAGE = "debian:bookworm-slim"
CONTAINER_PORT = 8880
SIZE_BUDGET = 600 * 1000 * 1000  # bytes, uncompressed


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(REPO / "image" / "containers.conf"))
    return env


def podman(
    *args: str, check: bool = True, capture: bool = False, timeout: float | None = None, **kw
) -> subprocess.CompletedProcess:
    cmd = ["podman", "--runtime", "runc", *args]
    proc = subprocess.run(
        cmd,
        env=podman_env(),
        text=True,
        timeout=timeout,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        **kw,
    )
    if check and proc.returncode != 0:
        detail = f"\n{proc.stderr.strip()}" if capture and proc.stderr else ""
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}{detail}")
    return proc


def default_voices() -> Path:
    """KOKORO_VOICES_FILE, else KOKORO_VOICES_PATH when it is a file (as ./dev and .ci/run set it), else
    ../shared/kokoro/voices-v1.0-en.npz beside the repository."""
    for var in ("KOKORO_VOICES_FILE", "KOKORO_VOICES_PATH"):
        env = os.environ.get(var)
        if env and (var == "KOKORO_VOICES_FILE" or Path(env).is_file()):
            return Path(env)
    return REPO.parent / "shared" / "kokoro" / "voices-v1.0-en.npz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------- steps
def ensure_base_image(force: bool = False) -> None:
    cmd = ["bash", str(REPO / "scripts" / "base_image.sh")] + (["--force"] if force else [])
    subprocess.run(cmd, env={**podman_env(), "BASE_IMAGE": BASE_IMAGE}, check=True)


def build_image(tag: str, voices: Path, context: Path, no_cache: bool = False) -> None:
    if not voices.is_file():
        raise SystemExit(f"error: voice bundle {voices} not found (set KOKORO_VOICES_FILE)")
    args = [
        "build",
        "--pull=never",
        "-f",
        str(REPO / "image" / "Dockerfile"),
        "--build-context",
        f"voices={voices.parent}",
        "--build-arg",
        f"VOICES_FILE={voices.name}",
        "-t",
        tag,
    ]
    # Trust a TLS-intercepting proxy in front of the package index through the host's CA bundle,
    # mounted read-only for RUN steps only (never copied into a layer).
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file():
        args += ["-v", "/etc/ssl/certs:/run/build-ca:ro"]
    if no_cache:
        args.append("--no-cache")
    podman(*args, str(context))


def image_size(tag: str) -> int:
    return int(podman("image", "inspect", tag, "--format", "{{.Size}}", capture=True).stdout.strip())


def render_deployment(tag: str, host_port: int) -> tuple[dict, list[str]]:
    """The Deployment as Flux renders it, image set via kustomize `images:`, adapted for podman."""
    sys.path.insert(0, str(REPO / "scripts"))
    import render  # scripts/render.py (kustomize build + Flux postBuild substitution)

    plain = [r for r in render.render_path(APP) if r.kind == "Deployment"]
    if len(plain) != 1:
        raise SystemExit(f"error: expected one Deployment in {APP}, found {len(plain)}")
    containers = plain[0].doc["spec"]["template"]["spec"]["containers"]
    # The image name as written in the manifest, without tag or digest: that is what `images:` matches.
    ref = containers[0]["image"].split("@", 1)[0]
    name = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    deployment = next(r.doc for r in render.render_path(APP, images={name: tag}) if r.kind == "Deployment")
    changes = []
    spec = deployment["spec"]
    if spec.get("replicas", 1) != 1:
        changes.append(f"spec.replicas {spec.get('replicas')} -> 1 (one pod per replica on one host)")
        spec["replicas"] = 1
    app = spec["template"]["spec"]["containers"][0]
    if app["image"] != tag:
        raise SystemExit(f"error: kustomize images: did not set the image: {app['image']}")
    port = next(p for p in app.get("ports", []) if p.get("containerPort") == CONTAINER_PORT)
    port["hostPort"], port["hostIP"] = host_port, "127.0.0.1"
    changes.append(
        f"ports[{port.get('name', CONTAINER_PORT)}]: hostPort {host_port}, hostIP 127.0.0.1 (no Service)"
    )
    return deployment, changes


def wait_ready(url: str, timeout: float, container: str) -> float:
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < timeout:
        state = podman(
            "inspect",
            container,
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            capture=True,
            check=False,
        ).stdout.strip()
        if state.startswith(("exited", "stopped")):
            logs = podman("logs", "--tail", "40", container, capture=True, check=False)
            raise RuntimeError(f"the container stopped ({state}) before /readyz:\n{logs.stdout}{logs.stderr}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(2)
    raise RuntimeError(f"/readyz not 200 within {timeout:.0f}s (last: {last})")


def security_checks(container: str, deployment: dict) -> list[str]:
    """The running container honours the manifest's securityContext (as far as podman enforces it)."""
    failures, notes = [], []
    uid = podman("exec", container, "id", "-u", capture=True).stdout.strip()
    gid = podman("exec", container, "id", "-g", capture=True).stdout.strip()
    if uid == "0":
        failures.append("the container runs as root")
    sc = deployment["spec"]["template"]["spec"]["containers"][0].get("securityContext", {})
    want_uid = sc.get("runAsUser") or deployment["spec"]["template"]["spec"].get("securityContext", {}).get(
        "runAsUser"
    )
    if want_uid is not None and uid != str(want_uid):
        failures.append(f"uid {uid}, the manifest says runAsUser {want_uid}")
    notes.append(f"uid={uid} gid={gid}")
    probe = podman("exec", container, "sh", "-c", "touch /e2e-write-probe", capture=True, check=False)
    if probe.returncode == 0:
        failures.append("writing to / succeeded: the root filesystem is not read-only")
    else:
        notes.append(
            f"write to / refused ({probe.stderr.strip().splitlines()[-1] if probe.stderr else 'error'})"
        )
    for d in ("/tmp", "/tmp/audio"):
        w = podman("exec", container, "sh", "-c", f"touch {d}/.e2e && rm {d}/.e2e", capture=True, check=False)
        if w.returncode != 0:
            failures.append(f"{d} is not writable: {w.stderr.strip()}")
    status = podman(
        "exec",
        container,
        "sh",
        "-c",
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/1/status",
        capture=True,
        check=False,
    ).stdout
    fields = dict(line.split(":\t", 1) for line in status.strip().splitlines() if ":\t" in line)
    if fields.get("CapEff", "").strip("0\n ") != "":
        failures.append(f"effective capabilities are not empty: {fields.get('CapEff')}")
    if fields.get("NoNewPrivs", "").strip() != "1":
        failures.append("no_new_privs is not set (allowPrivilegeEscalation: false)")
    if fields.get("Seccomp", "").strip() != "2":
        failures.append("no seccomp filter (seccompProfile: RuntimeDefault)")
    notes.append(
        f"CapEff={fields.get('CapEff', '?').strip()} NoNewPrivs={fields.get('NoNewPrivs', '?').strip()} "
        f"Seccomp={fields.get('Seccomp', '?').strip()}"
    )
    ro = podman(
        "inspect", container, "--format", "{{.HostConfig.ReadonlyRootfs}}", capture=True
    ).stdout.strip()
    if ro != "true":
        failures.append(f"HostConfig.ReadonlyRootfs is {ro}")
    for n in notes:
        log(f"  security: {n}")
    if failures:
        raise RuntimeError("security checks failed: " + "; ".join(failures))
    return notes


def offline_check(tag: str) -> str:
    """The image needs no network at run time: synthesize with networking disabled altogether."""
    script = (
        'kokoro-api say "This runs without any network." -o /tmp/offline.wav && python -c '
        "\"import soundfile as sf; d, r = sf.read('/tmp/offline.wav'); print(round(len(d) / r, 2))\""
    )
    flags = "--rm --network none --read-only --user 10001:10001 --cap-drop ALL --entrypoint sh".split()
    flags += ["--tmpfs", "/tmp:rw,size=1g,mode=1777"]
    proc = podman("run", *flags, tag, "-c", script, capture=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"synthesis with --network none failed:\n{proc.stdout}{proc.stderr[-2000:]}")
    seconds = float(proc.stdout.strip().splitlines()[-1])
    if not 1.0 <= seconds <= 6.0:
        raise RuntimeError(f"synthesis with --network none gave {seconds}s of audio")
    return f"--network none: {seconds}s of speech"


def container_name(deployment: dict) -> str:
    """podman kube play names a Deployment's container <deployment>-pod-0-<container>."""
    name = deployment["metadata"]["name"]
    cname = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    return f"{name}-pod-0-{cname}"


def kube_down(yaml_path: Path) -> None:
    podman("kube", "down", str(yaml_path), check=False, capture=True, timeout=300)


# -------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", default=IMAGE, help=f"image tag to build and play (default {IMAGE})")
    p.add_argument("--voices", type=Path, default=default_voices(), help="voice bundle (.npz) for the build")
    p.add_argument("--context", type=Path, default=REPO, help="build context (default: the repository)")
    p.add_argument("--skip-build", action="store_true", help="use the existing --tag image")
    p.add_argument("--no-cache", action="store_true", help="build without podman's layer cache")
    p.add_argument("--force-base", action="store_true", help="recreate the debootstrapped base image")
    p.add_argument(
        "--ready-timeout", type=float, default=600, help="seconds to wait for /readyz (default 600)"
    )
    p.add_argument("--smoke-args", default="", help="extra arguments for scripts/smoke_test.py")
    p.add_argument("--report", type=Path, help="write a JSON report (timings, size, smoke results)")
    p.add_argument("--junit", type=Path, help="JUnit XML of the smoke test")
    p.add_argument("--keep", action="store_true", help="leave the pod running")
    p.add_argument("--down", action="store_true", help="only tear down a pod left by --keep")
    args = p.parse_args(argv)

    for tool in ("podman", "runc", "catatonit"):  # catatonit: the pause process of `podman kube play`
        if shutil.which(tool) is None:
            raise SystemExit(f"error: {tool} is missing: apt-get install podman runc catatonit debootstrap")
    work = Path(tempfile.mkdtemp(prefix="kokoro-e2e-"))
    report: dict = {"image": args.tag, "steps": {}}
    t_all = time.monotonic()

    def step(name: str, t0: float) -> None:
        report["steps"][name] = round(time.monotonic() - t0, 1)
        log(f"{name}: {report['steps'][name]:.1f}s")

    # One run at a time per machine: runs share the pod's name and its emptyDir volumes ("tmp", "audio").
    lock = open(Path(tempfile.gettempdir()) / "kokoro-api-e2e.lock", "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another e2e run holds the lock; waiting for it to finish")
        fcntl.flock(lock, fcntl.LOCK_EX)

    host_port = free_port()
    deployment, changes = render_deployment(args.tag, host_port)
    kube_yaml = work / "deployment.yaml"
    import yaml

    kube_yaml.write_text(yaml.safe_dump(deployment, sort_keys=False))
    if args.down:
        kube_down(kube_yaml)
        log("torn down")
        return 0

    rc = 1
    played = False
    try:
        if not args.skip_build:
            t0 = time.monotonic()
            ensure_base_image(args.force_base)
            step("base_image", t0)
            t0 = time.monotonic()
            build_image(args.tag, args.voices, args.context, args.no_cache)
            step("build", t0)
        size = image_size(args.tag)
        report["image_size_bytes"] = size
        log(f"image {args.tag}: {size / 1e6:.0f} MB uncompressed (budget {SIZE_BUDGET / 1e6:.0f} MB)")

        log(
            f"rendered Deployment {deployment['metadata']['name']} "
            f"({deployment['metadata'].get('namespace')}); adapted for podman: {'; '.join(changes)}"
        )
        t0 = time.monotonic()
        kube_down(kube_yaml)  # a pod left over from an interrupted run
        played = True
        out = podman("kube", "play", str(kube_yaml), capture=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"podman kube play failed:\n{out.stdout}{out.stderr}")
        container = container_name(deployment)
        url = f"http://127.0.0.1:{host_port}"
        log(f"playing: container {container}, {url}")
        ready = wait_ready(url, args.ready_timeout, container)
        step("kube_play_to_ready", t0)
        report["ready_s"] = round(ready, 1)

        t0 = time.monotonic()
        report["security"] = security_checks(container, deployment)
        step("security_checks", t0)

        t0 = time.monotonic()
        smoke_json = work / "smoke.json"
        cmd = [
            sys.executable,
            str(REPO / "scripts" / "smoke_test.py"),
            "--url",
            url,
            "--json",
            str(smoke_json),
        ]
        if args.junit:
            cmd += ["--junit", str(args.junit)]
        cmd += args.smoke_args.split()
        smoke = subprocess.run(cmd)
        step("smoke_test", t0)
        if smoke_json.is_file():
            report["smoke"] = json.loads(smoke_json.read_text())
        if smoke.returncode != 0:
            logs = podman("logs", "--tail", "60", container, capture=True, check=False)
            print(f"--- last container log lines ---\n{logs.stdout}{logs.stderr}", flush=True)
            raise RuntimeError(f"smoke test failed (exit {smoke.returncode})")
        t0 = time.monotonic()
        report["offline"] = offline_check(args.tag)
        log(f"  offline: {report['offline']}")
        step("offline_check", t0)
        rc = 0
    except (RuntimeError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        log(f"FAILED: {e}")
        report["error"] = str(e)
    finally:
        if played and not args.keep:
            t0 = time.monotonic()
            kube_down(kube_yaml)
            step("kube_down", t0)
        elif played:
            log(f"left running; tear down with: {sys.argv[0]} --down --tag {args.tag}")
        report["total_s"] = round(time.monotonic() - t_all, 1)
        report["passed"] = rc == 0
        log(f"{'PASSED' if rc == 0 else 'FAILED'} in {report['total_s']:.0f}s: {json.dumps(report['steps'])}")
        if args.report:
            args.report.write_text(json.dumps(report, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
