#!/usr/bin/env python3
"""Validate the GitOps tree strictly, as Flux would apply it (``task kubernetes:kubeconform``).

1. Every YAML file under ``kubernetes/`` is checked for duplicate keys (named by file, line and field).
2. Targets: the Flux entry and every Flux Kustomization (``ks.yaml``) are validated as files, and each
   one's ``spec.path`` is rendered like Flux renders it (``scripts/render.py``: kustomize build with
   ``--load-restrictor=LoadRestrictionsNone``, ``targetNamespace``, ``postBuild.substitute``). Every other
   folder with a ``kustomization.yaml`` is rendered with plain ``kustomize build``.
3. The real ``kubeconform`` binary validates the result with ``-strict -summary``, the Kubernetes version
   and two schema locations (core kinds; CRDs in the CRDs-catalog layout). No ``-ignore-missing-schemas``:
   a kind without a schema fails. SOPS-encrypted Secrets are validated without their ``sops:`` block.
   With an offline schema directory, a core kind it lacks (e.g. a Job) is looked up in the strict schemas
   that PyPI's ``kubernetes-validate`` ships, made standalone in a temporary folder.
4. Container images: a digest must be ``sha256:`` and 64 hex digits and not the all-zero placeholder; a
   tag is required (never ``latest``).

Schemas: the public catalogues by default; ``--schemas DIR`` or ``KUBECONFORM_SCHEMAS_DIR`` for an offline
copy laid out as ``DIR/kubernetes/v<ver>-standalone-strict/`` and ``DIR/<group>/<kind>_<version>.json``.
Exit status 0 only if every resource is valid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import render  # noqa: E402

DEFAULT_KUBERNETES_VERSION = "1.32.2"
PUBLIC_CRD_LOCATION = (
    "https://raw.githubusercontent.com/datreeio/CRDs-catalog/main/"
    "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
)


def kubeconform_binary() -> str:
    found = render.find_tool("kubeconform", "KUBECONFORM")
    if found is None:
        raise SystemExit(
            "error: kubeconform not found: install it with "
            "`go install github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0` or set KUBECONFORM"
        )
    return found


def fallback_schemas(docs: list[dict], primary: Path, version: str, workdir: Path) -> str | None:
    """A kubeconform location holding standalone strict schemas, from PyPI's ``kubernetes-validate``,
    for the core kinds in ``docs`` that ``primary`` lacks; None if none is missing (or the package is
    absent: kubeconform then reports the kind as having no schema)."""
    try:
        import kubernetes_validate
    except ImportError:
        return None
    minor = ".".join(version.split(".")[:2])
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{minor}.0-local-strict"
    target = workdir / "kubernetes-validate"
    definitions = None
    for doc in docs:
        api, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", "")).lower()
        group, _, ver = api.rpartition("/")
        if "." in group and not group.endswith(".k8s.io"):
            continue  # a CRD: the CRDs-catalog layout covers it
        name = f"{kind}-{group.split('.')[0]}-{ver}.json" if group else f"{kind}-{ver}.json"
        if (primary / f"v{version}-standalone-strict" / name).is_file() or (target / name).is_file():
            continue
        if not (source / name).is_file():
            continue
        if definitions is None:
            text = (source / "_definitions.json").read_text().replace('"/api/_definitions.json#/', '"#/')
            definitions = json.loads(text)["$defs"]
        schema = json.loads((source / name).read_text().replace('"/api/_definitions.json#/', '"#/'))
        schema["$defs"] = definitions
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(json.dumps(schema))
    if not target.is_dir():
        return None
    return str(target) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"


ZERO_DIGEST = "sha256:" + "0" * 64
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def image_errors(doc: dict) -> list[str]:
    """Placeholder or malformed image references in a workload (Deployment, Job, ...)."""
    errors = []
    spec = doc.get("spec") or {}
    pod = (spec.get("jobTemplate") or {}).get("spec", spec).get("template", {}).get("spec") or {}
    what = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
    for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        image = str(container.get("image", ""))
        name, _, digest = image.partition("@")
        tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
        where = f"{what}: container '{container.get('name')}': image '{image}'"
        if digest == ZERO_DIGEST:
            errors.append(f"{where}: the all-zero digest is a placeholder (pin the real one: task image:pin)")
        elif digest and not _DIGEST.match(digest):
            errors.append(f"{where}: digest must be sha256: and 64 hex digits")
        if not tag or tag == "latest":
            errors.append(f"{where}: needs a version tag (not 'latest')")
    return errors


def schema_locations(schemas_dir: str | None) -> list[str]:
    if not schemas_dir:
        return ["default", PUBLIC_CRD_LOCATION]
    base = Path(schemas_dir).resolve()
    if not base.is_dir():
        raise SystemExit(f"error: schema directory {base} does not exist")
    return [
        str(base / "kubernetes"),
        str(base) + "/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
    ]


class Collector:
    """Gathers rendered resources into a temporary tree that mirrors their source files."""

    def __init__(self, root: Path, workdir: Path) -> None:
        self.root = root
        self.workdir = workdir
        self.docs: dict[str, list[dict]] = defaultdict(list)
        self.seen: set[tuple] = set()
        self.errors: dict[str, list[str]] = defaultdict(list)

    def source_name(self, origin: Path | None, fallback: str) -> str:
        if origin is None:
            return fallback
        return render.display_path(origin, self.root)

    def add(self, resources: list[render.Resource], fallback: str) -> None:
        for resource in resources:
            doc = dict(resource.doc)
            doc.pop("sops", None)  # SOPS metadata is not part of the object Flux applies
            source = self.source_name(resource.origin, fallback)
            key = (
                source,
                resource.kind,
                resource.namespace,
                resource.name,
                json.dumps(doc, sort_keys=True, default=str),
            )
            if key in self.seen:
                continue
            self.seen.add(key)
            self.docs[source].append(doc)

    def write(self) -> dict[str, str]:
        """Write one file per source; return {written path: source name}."""
        mapping = {}
        for index, (source, docs) in enumerate(sorted(self.docs.items())):
            target = self.workdir / f"{index:03d}" / source
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(render.to_yaml(docs))
            mapping[str(target)] = source
        return mapping


def collect(root: Path, collector: Collector) -> None:
    kubernetes = root / "kubernetes"
    for file in render.yaml_files(kubernetes):
        errors = render.duplicate_key_errors(
            file.read_text(encoding="utf-8"), render.display_path(file, root)
        )
        for error in errors:
            collector.errors[render.display_path(file, root)].append(error)
    if collector.errors:
        return  # rendering would only repeat the YAML errors less clearly

    flux_paths: set[Path] = set()
    for ks in render.find_flux_kustomizations(root):
        source = render.display_path(ks.source_file, root)
        collector.add(
            [
                render.Resource(d, ks.source_file)
                for d in render.load_documents(ks.source_file)
                if render.is_flux_kustomization(d)
            ],
            source,
        )
        if ks.path is None:
            continue  # the schema check reports the missing spec.path
        if not ks.in_repo:
            continue  # spec.path is inside another source (e.g. the Gateway API CRDs' GitRepository)
        flux_paths.add(ks.path)
        try:
            collector.add(render.render_flux_kustomization(ks, root=root), source)
        except render.RenderError as exc:
            collector.errors[exc.file or source].append(
                f"rendering Kustomization '{ks.name}' ({source}): {exc}"
            )

    for directory in render.find_kustomization_dirs(root):
        if directory.resolve() in flux_paths:
            continue
        source = render.display_path(directory / "kustomization.yaml", root)
        try:
            collector.add(render.kustomize_build(directory, root=root), source)
        except render.RenderError as exc:
            collector.errors[exc.file or source].append(str(exc))


def run_kubeconform(files: dict[str, str], locations: list[str], version: str) -> tuple[dict, str]:
    cmd = [
        kubeconform_binary(),
        "-strict",
        "-summary",
        "-verbose",
        "-output",
        "json",
        "-kubernetes-version",
        version,
    ]
    for location in locations:
        cmd += ["-schema-location", location]
    cmd += sorted(files)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        return json.loads(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        return {"resources": [], "summary": {}}, proc.stdout + proc.stderr


_AT = re.compile(r"at '(/[^']*)': (.*?)(?=\s+- at '|$)")


def field_errors(resource: dict) -> list[tuple[str, str]]:
    """(JSON pointer, message) for each leaf error. kubeconform's ``validationErrors`` keeps only the
    top level ("/spec/http: validation failed"); the nested causes are in ``msg``."""
    pairs = [(m.group(1), m.group(2).strip()) for m in _AT.finditer(resource.get("msg", ""))]
    if not pairs:
        pairs = [(e.get("path", ""), e.get("msg", "")) for e in resource.get("validationErrors") or []]
    leaves = []
    for path, message in pairs:
        deeper = any(other != path and other.startswith(path + "/") for other, _ in pairs)
        if message == "validation failed" and deeper:
            continue
        if (path, message) not in leaves:
            leaves.append((path, message))
    return leaves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(render.REPO_ROOT), help="repository root (default: this repo)")
    parser.add_argument(
        "--schemas",
        default=os.environ.get("KUBECONFORM_SCHEMAS_DIR"),
        help="offline schema directory (env KUBECONFORM_SCHEMAS_DIR); default: public catalogues",
    )
    parser.add_argument(
        "--kubernetes-version", default=os.environ.get("KUBERNETES_VERSION", DEFAULT_KUBERNETES_VERSION)
    )
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    locations = schema_locations(args.schemas)

    with tempfile.TemporaryDirectory(prefix="kubeconform-") as tmp:
        collector = Collector(root, Path(tmp))
        try:
            collect(root, collector)
        except render.RenderError as exc:
            print(f"FAIL {exc}")
            return 1
        files = collector.write()
        for source, docs in collector.docs.items():
            for doc in docs:
                for error in image_errors(doc):
                    collector.errors[source].append(error)
        if args.schemas:
            every = [doc for docs in collector.docs.values() for doc in docs]
            extra = fallback_schemas(every, Path(args.schemas).resolve() / "kubernetes",
                                     args.kubernetes_version, Path(tmp))  # fmt: skip
            if extra:
                locations = [*locations, extra]
        results: dict[str, list[str]] = defaultdict(list)
        counts = {"valid": 0, "invalid": 0, "skipped": 0}
        for source, errors in collector.errors.items():
            results[source].extend(errors)
            counts["invalid"] += len(errors)
        raw_stderr = ""
        if files:
            output, raw_stderr = run_kubeconform(files, locations, args.kubernetes_version)
            for resource in output.get("resources", []):
                source = files.get(resource.get("filename", ""), resource.get("filename", "?"))
                status = resource.get("status", "")
                what = f"{resource.get('kind', '?')}/{resource.get('name', '?')}"
                if status == "statusValid":
                    counts["valid"] += 1
                    results.setdefault(source, [])
                    continue
                if resource.get("kind") == "Secret" and "could not find schema" in resource.get("msg", ""):
                    # The one allowed gap: a schema catalogue without Secret (SOPS files are Secrets).
                    counts["skipped"] += 1
                    results.setdefault(source, [])
                    continue
                counts["invalid"] += 1
                details = field_errors(resource)
                if details:
                    for path, message in details:
                        field = path.strip("/").replace("/", ".") or "(document)"
                        results[source].append(f"{what}: field '{field}': {message}")
                else:
                    results[source].append(f"{what}: {resource.get('msg', status)}")
            if not output.get("resources") and raw_stderr.strip():
                results["kubeconform"].append(raw_stderr.strip())
                counts["invalid"] += 1

    for source in sorted(results):
        problems = results[source]
        print(f"{'FAIL' if problems else 'ok  '} {source}")
        for problem in problems:
            for line in problem.splitlines():
                print(f"     {line}")
    where = args.schemas or "public catalogues"
    print(
        f"Summary: {counts['valid']} resources valid, {counts['invalid']} problems, "
        f"{counts['skipped']} Secrets without a schema "
        f"(kubernetes {args.kubernetes_version}, schemas: {where})"
    )
    return 1 if counts["invalid"] else 0


if __name__ == "__main__":
    sys.exit(main())
