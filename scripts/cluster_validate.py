#!/usr/bin/env python3
"""Validate the tree as Flux renders it with real cluster tools (``task kubernetes:validate``).

Three validators, each on every object Flux would apply (``scripts/render.py``, all Flux Kustomizations
whose path is in this repository, plus the ks.yaml files themselves):

1. **Server-side dry-run against a real kube-apiserver.** etcd (Debian's ``etcd-server``) and a
   kube-apiserver built from k8s.io/kubernetes (``tools/apiserver``) start on loopback ports in a
   temporary folder; the CRDs of Flux, Istio, the Gateway API, Cilium and the Prometheus operator are
   installed from the Go modules that ship them (``CRD_SOURCES``, fetched with ``go mod download``);
   the tree's Namespaces are created; then every object is applied with
   ``kubectl apply --server-side --dry-run=server``: admission (incl. Pod Security), defaulting, CRD
   structural schemas and their CEL rules. An error or a warning fails.
2. **istioctl analyze** on the mesh-relevant objects, applied for the run to that API server (offline,
   istioctl ignores Services and Namespaces in files and skips the analyzers that need them); any
   message at Warning or above fails.
3. **kube-score** on the core objects; every WARNING or CRITICAL fails, except the checks in
   ``KUBE_SCORE_IGNORED`` (each with its reason).

The tools are built by ``scripts/platform_tools.sh`` into ``.venv/bin``. Exit status 0 only if all pass.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render  # noqa: E402

# The CRDs the tree's kinds need, from the Go modules of the releases it deploys or expects.
GATEWAY_API_VERSION = "v1.4.1"  # keep in step with kubernetes/apps/kube-system/gateway-api/ks.yaml
CRD_SOURCES: list[tuple[str, list[str]]] = [
    (f"sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}", ["config/crd/standard"]),
    ("github.com/fluxcd/source-controller@v1.9.6", ["config/crd/bases"]),
    ("github.com/fluxcd/kustomize-controller@v1.9.6", ["config/crd/bases"]),
    ("github.com/fluxcd/helm-controller@v1.4.0", ["config/crd/bases"]),
    # istio.io/istio publishes no tagged module versions: the 1.31 development line, a superset of the
    # CRDs of the charts kubernetes/apps/istio-system installs.
    (
        "istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad",
        ["manifests/charts/base/files/crd-all.gen.yaml"],
    ),
    (
        "github.com/cilium/cilium@v1.18.4",
        [
            "pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnetworkpolicies.yaml",
            "pkg/k8s/apis/cilium.io/client/crds/v2/ciliumclusterwidenetworkpolicies.yaml",
        ],
    ),
    (
        "github.com/prometheus-operator/prometheus-operator@v0.85.0",
        [
            "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        ],
    ),
]

# kube-score checks that do not fit this tree, each with the reason:
KUBE_SCORE_IGNORED = {
    # The pods are isolated by a CiliumNetworkPolicy (mesh and monitoring only), which kube-score does
    # not read; a Kubernetes NetworkPolicy on top would duplicate it.
    "pod-networkpolicy": "isolation is a CiliumNetworkPolicy, which kube-score does not read",
    # The image is pinned by tag (and by digest once Renovate or `task image:pin` adds it); Always would
    # make every pod start depend on the registry for nothing when the digest is pinned.
    "container-image-pull-policy": "the image is pinned; IfNotPresent is right for a pinned image",
}

# What istioctl analyze reads: Istio and Gateway API config and the core objects it cross-checks.
ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io", "gateway.networking.k8s.io")
ISTIO_CORE_KINDS = ("Namespace", "Service", "Deployment", "Pod", "ConfigMap", "ServiceAccount")


class ValidationError(Exception):
    """A validator could not run (a tool or a module is missing): the message says what to install."""


@dataclasses.dataclass
class Obj:
    source: str  # the file it came from, relative to the repository
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def group(self) -> str:
        api = str(self.doc.get("apiVersion", ""))
        return api.split("/")[0] if "/" in api else ""

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        return (self.doc.get("metadata") or {}).get("namespace")

    def label(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


# --------------------------------------------------------------------------- what Flux applies


def flux_objects(root: Path) -> list[Obj]:
    """Every object Flux applies from this repository, once each, SOPS metadata removed."""
    found: dict[tuple, Obj] = {}

    def add(resource: render.Resource, fallback: str) -> None:
        doc = {k: v for k, v in resource.doc.items() if k != "sops"}
        key = (
            doc.get("apiVersion"),
            doc.get("kind"),
            (doc.get("metadata") or {}).get("namespace"),
            (doc.get("metadata") or {}).get("name"),
        )
        source = render.display_path(resource.origin, root) if resource.origin else fallback
        found.setdefault(key, Obj(source, doc))

    for ks in render.find_flux_kustomizations(root):
        source = render.display_path(ks.source_file, root)
        for doc in render.load_documents(ks.source_file):
            add(render.Resource(doc, ks.source_file), source)
        if ks.path is not None and ks.in_repo:
            for resource in render.render_flux_kustomization(ks, root=root):
                add(resource, source)
    return list(found.values())


def tool(name: str, env: str) -> str:
    found = render.find_tool(name, env)
    if found is None:
        raise ValidationError(f"{name} not found: run scripts/platform_tools.sh (or set {env})")
    return found


def write_objects(objs: list[Obj], path: Path) -> Path:
    path.write_text("".join("---\n" + yaml.safe_dump(o.doc, sort_keys=False) for o in objs))
    return path


# --------------------------------------------------------------------------- the API server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def go_module_dir(module: str) -> Path:
    go = shutil.which("go")
    if go is None:
        raise ValidationError("go not found: the CRDs come from Go modules (go mod download)")
    proc = subprocess.run(
        [go, "mod", "download", "-json", module], capture_output=True, text=True, timeout=600, check=False
    )
    info = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "Dir" not in info:
        raise ValidationError(f"go mod download {module} failed: {info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"])


def crd_files() -> list[Path]:
    files = []
    for module, paths in CRD_SOURCES:
        base = go_module_dir(module)
        for rel in paths:
            target = base / rel
            files += sorted(target.glob("*.yaml")) if target.is_dir() else [target]
    return files


class ApiServer:
    """etcd + kube-apiserver on loopback ports in a temporary folder, with the CRDs installed.

    Use as a context manager; ``dry_run(objs)`` returns {source file: [problems]}."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="apiserver-") if workdir is None else None
        self.dir = Path(self._tmp.name) if self._tmp else workdir
        self.procs: list[subprocess.Popen] = []
        self.kubeconfig = self.dir / "kubeconfig"
        self.kubectl = tool("kubectl", "KUBECTL")

    # -- lifecycle
    def __enter__(self) -> ApiServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def _log_tail(self, name: str) -> str:
        text = (self.dir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-15:])

    def start(self) -> None:
        etcd = render.find_tool("etcd", "ETCD") or "/usr/bin/etcd"
        if not Path(etcd).is_file():
            raise ValidationError("etcd not found: apt-get install etcd-server (or set ETCD)")
        apiserver = tool("kube-apiserver", "KUBE_APISERVER")
        client, peer, secure = free_port(), free_port(), free_port()
        self._spawn(
            "etcd",
            [
                etcd, "--name", "validate", "--data-dir", str(self.dir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"validate=http://127.0.0.1:{peer}",
                "--log-level", "warn",
            ],
        )  # fmt: skip
        key, pub = self.dir / "sa.key", self.dir / "sa.pub"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], capture_output=True, check=True)
        subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
                       capture_output=True, check=True)  # fmt: skip
        token = os.urandom(16).hex()
        (self.dir / "tokens.csv").write_text(f'{token},validate,validate,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                apiserver,
                f"--etcd-servers=http://127.0.0.1:{client}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={secure}",
                f"--cert-dir={self.dir / 'certs'}",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pub}", f"--service-account-signing-key-file={key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--enable-priority-and-fairness=false",
                # loopback only: no "kubernetes" Service endpoints to reconcile (127.0.0.1 is refused there)
                "--endpoint-reconciler-type=none",
            ],
        )  # fmt: skip
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "v", "cluster": {"server": f"https://127.0.0.1:{secure}",
                                                           "insecure-skip-tls-verify": True}}],
                    "users": [{"name": "v", "user": {"token": token}}],
                    "contexts": [{"name": "v", "context": {"cluster": "v", "user": "v"}}],
                    "current-context": "v",
                }
            )
        )  # fmt: skip
        self._wait_ready()
        self.install_crds()

    def _wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, name in zip(self.procs, ("etcd", "kube-apiserver"), strict=False):
                if proc.poll() is not None:
                    raise ValidationError(f"{name} exited ({proc.returncode}):\n{self._log_tail(name)}")
            result = self.run(["get", "--raw", "/readyz"], check=False)
            if result.returncode == 0 and result.stdout.strip() == "ok":
                return
            time.sleep(1)
        raise ValidationError(
            f"kube-apiserver not ready after {timeout:.0f} s:\n{self._log_tail('kube-apiserver')}"
        )

    def install_crds(self) -> None:
        files = crd_files()
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=validate"]
        for file in files:
            args += ["-f", str(file)]
        self.run(args, timeout=300)
        self.run(["wait", "--for=condition=Established", "crd", "--all", "--timeout=120s"], timeout=180)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- use
    def run(self, args: list[str], *, check: bool = True, timeout: float = 120, stdin: str | None = None,
            ) -> subprocess.CompletedProcess:  # fmt: skip
        proc = subprocess.run(
            [self.kubectl, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise ValidationError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()}")
        return proc

    def dry_run(self, objs: list[Obj]) -> dict[str, list[str]]:
        """Server-side dry-run of each object; Namespaces of the tree (and the ones Flux needs) are created
        for real first. Returns {source: [problems]} with an entry (maybe empty) per source."""
        results: dict[str, list[str]] = {o.source: [] for o in objs}
        namespaces = {"flux-system", "monitoring"} | {o.name for o in objs if o.kind == "Namespace"}
        namespaces |= {o.namespace for o in objs if o.namespace}
        for ns in sorted(namespaces):
            doc = next((o.doc for o in objs if o.kind == "Namespace" and o.name == ns), None)
            doc = doc or {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            self.run(
                ["apply", "--server-side", "--field-manager=validate", "-f", "-"], stdin=yaml.safe_dump(doc)
            )
        for obj in objs:
            proc = self.run(
                ["apply", "--server-side", "--dry-run=server", "--field-manager=kustomize-controller",
                 "--validate=strict", "-f", "-"],
                stdin=yaml.safe_dump(obj.doc), check=False,
            )  # fmt: skip
            messages = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
            if proc.returncode != 0 or messages:
                results[obj.source].append(f"{obj.label()}: " + " | ".join(messages or ["failed"]))
        return results


@contextlib.contextmanager
def api_server() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


# --------------------------------------------------------------------------- istioctl, kube-score


def istioctl_analyze(objs: list[Obj], workdir: Path, server: ApiServer) -> dict[str, list[str]]:
    """istioctl analyze against the API server, with the mesh objects applied to it for the run.

    Offline (``--use-kube=false``) istioctl drops Services, Namespaces and Pods from files and skips every
    analyzer that needs them (e.g. IST0101, a route to a host no Service provides), so the objects are
    applied for real (there are no controllers: nothing runs) and removed again afterwards."""
    istioctl = tool("istioctl", "ISTIOCTL")
    chosen = [
        o for o in objs if o.group in ISTIO_GROUPS or (o.group in ("", "apps") and o.kind in ISTIO_CORE_KINDS)
    ]
    results: dict[str, list[str]] = {o.source: [] for o in chosen}
    file = write_objects(chosen, workdir / "istio.yaml")
    removable = write_objects([o for o in chosen if o.kind != "Namespace"], workdir / "istio-removable.yaml")
    applied = server.run(["apply", "--server-side", "--force-conflicts", "--field-manager=validate-istioctl",
                          "-f", str(file)], check=False, timeout=300)  # fmt: skip
    try:
        if applied.returncode != 0:
            results["istioctl"] = [f"applying the mesh objects failed: {applied.stderr.strip()}"]
            return results
        proc = subprocess.run(
            [istioctl, "analyze", "--all-namespaces", f"--kubeconfig={server.kubeconfig}",
             "--failure-threshold=Warning", "--output-threshold=Warning", "--output=json"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        server.run(
            ["delete", "--ignore-not-found", "--wait=false", "-f", str(removable)], check=False, timeout=300
        )
    try:
        messages = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        messages = None
    if messages is None or (proc.returncode not in (0, 79) and not messages):
        # 79: analysis found messages at or above the threshold; anything else is a failure to run
        results["istioctl"] = [
            f"istioctl analyze failed ({proc.returncode}): {(proc.stdout + proc.stderr).strip()}"
        ]
        return results
    by_label = {(o.kind, o.namespace, o.name): o.source for o in chosen}
    for message in messages:
        origin = str(message.get("origin", ""))  # e.g. "VirtualService ai-services/kokoro-api"
        kind, _, ref = origin.partition(" ")
        ns, _, name = ref.rpartition("/")
        source = by_label.get((kind, ns or None, name), "istioctl")
        code = message.get("code") or ""
        results.setdefault(source, []).append(
            f"{message.get('level')} [{code}] {origin}: {message.get('message')}"
        )
    return results


def kube_score(objs: list[Obj], workdir: Path) -> dict[str, list[str]]:
    binary = tool("kube-score", "KUBE_SCORE")
    chosen = [
        o for o in objs if o.group in ("", "apps", "policy", "batch", "networking.k8s.io", "autoscaling")
    ]
    file = write_objects(chosen, workdir / "core.yaml")
    cmd = [binary, "score", "--output-format=ci"]
    for check in KUBE_SCORE_IGNORED:
        cmd += ["--ignore-test", check]
    proc = subprocess.run([*cmd, str(file)], capture_output=True, text=True, timeout=300, check=False)
    results: dict[str, list[str]] = {o.source: [] for o in chosen}
    if proc.returncode not in (0, 1):
        results["kube-score"] = [f"kube-score failed ({proc.returncode}): {proc.stderr.strip()}"]
        return results
    by_label = {(o.kind, o.name): o.source for o in chosen}
    for line in proc.stdout.splitlines():
        # [CRITICAL] kokoro-api/ai-services apps/v1/Deployment: (app) Container has no ... (ci format)
        if not line.startswith(("[CRITICAL]", "[WARNING]")):
            continue
        level, _, rest = line.partition(" ")
        target, _, message = rest.partition(": ")
        name = target.split("/")[0]
        kind = target.split(" ")[-1].rsplit("/", 1)[-1] if " " in target else ""
        results.setdefault(by_label.get((kind, name), "kube-score"), []).append(
            f"{level} {target}: {message}"
        )
    return results


# --------------------------------------------------------------------------- CLI


VALIDATORS = ("apiserver", "istioctl", "kube-score")


def validate(
    root: Path, only: tuple[str, ...] = VALIDATORS, server: ApiServer | None = None
) -> dict[str, dict]:
    """{validator: {source: [problems]}} for the tree at root."""
    objs = flux_objects(root)
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="cluster-validate-") as tmp, contextlib.ExitStack() as stack:
        if "kube-score" in only:
            report["kube-score"] = kube_score(objs, Path(tmp))
        if "apiserver" in only or "istioctl" in only:
            if server is None:
                server = stack.enter_context(api_server())
            dry_run = server.dry_run(objs)  # also creates the Namespaces istioctl needs
            if "apiserver" in only:
                report["apiserver"] = dry_run
            if "istioctl" in only:
                report["istioctl"] = istioctl_analyze(objs, Path(tmp), server)
    return report


def problems(report: dict[str, dict]) -> list[str]:
    return [f"{name}: {source}: {p}" for name, by in report.items() for source, ps in by.items() for p in ps]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(render.REPO_ROOT), help="repository root (default: this repo)")
    parser.add_argument(
        "--only", action="append", choices=VALIDATORS, help="run only this validator (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        report = validate(Path(args.root).resolve(), tuple(args.only or VALIDATORS))
    except (ValidationError, render.RenderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for name, by_source in report.items():
        print(f"== {name}")
        for source in sorted(by_source):
            found = by_source[source]
            failed += len(found)
            print(f"{'FAIL' if found else 'ok  '} {source}")
            for problem in found:
                print(f"     {problem}")
    print(f"Summary: {failed} problems ({', '.join(report)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
