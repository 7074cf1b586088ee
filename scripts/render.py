#!/usr/bin/env python3
"""Render the GitOps tree exactly as Flux applies it: ``kustomize build`` + Flux ``postBuild.substitute``.

Used by ``scripts/kubeconform.py`` (validation), ``task flux:apply`` (apply to a cluster) and the image
end-to-end test (run the rendered Deployment under podman). Importable::

    from render import render_path, to_yaml
    resources = render_path("kubernetes/apps/ai-services/kokoro-api",
                            images={"ghcr.io/kokoro-api/kokoro-api": "localhost/kokoro-api:dev"})
    deployment = next(r.doc for r in resources if r.kind == "Deployment")

CLI::

    python scripts/render.py ai-services/kokoro-api [--kind Deployment] [--image OLD=NEW[:TAG]] [--decrypt]

What Flux does, and this module copies (kustomize-controller, fluxcd/pkg/kustomize):
  * a ``path`` without ``kustomization.yaml`` gets a generated one: every sub-folder that has a
    ``kustomization.yaml`` (not descended into) and every other Kubernetes YAML file below it;
  * ``targetNamespace`` is set the way ``namespace:`` in a kustomization sets it;
  * ``postBuild.substitute`` replaces ``${VAR}``, ``${VAR:=default}``/``${VAR:-default}`` in every resource
    except those annotated or labelled ``kustomize.toolkit.fluxcd.io/substitute: disabled``; ``$${VAR}``
    leaves a literal ``${VAR}``; ``$VAR`` without braces is left alone.
One deliberate difference: an unset variable without a default is an error here (Flux's
``StrictPostBuildSubstitutions`` behaviour), not an empty string, so a typo cannot pass validation.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
FLUX_KUSTOMIZATION_API = "kustomize.toolkit.fluxcd.io/"
ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
SUBSTITUTE_KEY = "kustomize.toolkit.fluxcd.io/substitute"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
VAR_NAME = re.compile(r"^[_A-Za-z][_A-Za-z0-9]*$")


class RenderError(Exception):
    """A manifest cannot be rendered; the message names the file (and field where known)."""

    def __init__(self, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.file = file  # the source file at fault, relative to the repository, when known


# --------------------------------------------------------------------------- YAML loading


def _walk_duplicates(node: yaml.Node, path: str, file: str, errors: list[str]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            field = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                errors.append(f"{file}:{line}: duplicate key '{field}' (first defined at line {seen[key]})")
            else:
                seen[key] = line
            _walk_duplicates(value_node, field, file, errors)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk_duplicates(item, f"{path}[{index}]", file, errors)


def duplicate_key_errors(text: str, file: str) -> list[str]:
    """Every duplicated mapping key in a (multi-document) YAML text, as ``file:line: ... 'a.b.c'``."""
    errors: list[str] = []
    try:
        for document in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if document is not None:
                _walk_duplicates(document, "", file, errors)
    except yaml.YAMLError as exc:
        errors.append(f"{file}: invalid YAML: {exc}")
    return errors


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The mapping documents of a YAML file; duplicate keys and syntax errors raise RenderError."""
    text = path.read_text(encoding="utf-8")
    errors = duplicate_key_errors(text, display_path(path))
    if errors:
        raise RenderError("\n".join(errors))
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def display_path(path: Path, root: Path = REPO_ROOT) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- data types


@dataclasses.dataclass
class Resource:
    """One rendered object and the source file it came from (None when unknown)."""

    doc: dict[str, Any]
    origin: Path | None

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        return (self.doc.get("metadata") or {}).get("namespace")


@dataclasses.dataclass
class FluxKustomization:
    """A ``kustomize.toolkit.fluxcd.io`` Kustomization found in the tree."""

    name: str
    source_file: Path
    path: Path | None  # spec.path resolved against the repository root
    target_namespace: str | None
    substitute: dict[str, str] | None  # None: no postBuild, no substitution at all
    source: tuple[str, str] = ("GitRepository", "flux-system")  # spec.sourceRef kind and name

    @property
    def in_repo(self) -> bool:
        """True if spec.path is a folder of this repository (the bootstrap's ``flux-system`` source), not
        of another source such as the Gateway API's GitRepository."""
        return self.source == ("GitRepository", "flux-system")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source_file: Path, root: Path) -> FluxKustomization:
        spec = doc.get("spec") or {}
        raw_path = spec.get("path")
        post_build = spec.get("postBuild")
        substitute = None
        if isinstance(post_build, Mapping):
            substitute = {str(k): str(v) for k, v in (post_build.get("substitute") or {}).items()}
        return cls(
            name=str((doc.get("metadata") or {}).get("name", "")),
            source_file=source_file,
            path=(root / str(raw_path)).resolve() if raw_path else None,
            target_namespace=spec.get("targetNamespace"),
            substitute=substitute,
            source=(
                str((spec.get("sourceRef") or {}).get("kind", "")),
                str((spec.get("sourceRef") or {}).get("name", "")),
            ),
        )


# --------------------------------------------------------------------------- discovery


def is_flux_kustomization(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "Kustomization" and str(doc.get("apiVersion", "")).startswith(
        FLUX_KUSTOMIZATION_API
    )


def has_kustomization(directory: Path) -> bool:
    return any((directory / name).is_file() for name in KUSTOMIZATION_FILES)


def is_component(directory: Path) -> bool:
    """A kustomize Component (``kind: Component``): it can only be built as part of a Kustomization."""
    for name in KUSTOMIZATION_FILES:
        file = directory / name
        if file.is_file():
            docs = [d for d in yaml.safe_load_all(file.read_text(encoding="utf-8")) if isinstance(d, dict)]
            return any(d.get("kind") == "Component" for d in docs)
    return False


# What `flux bootstrap` writes into its --path (flux-system/: the controllers, their CRDs and the sync
# objects). Flux's own, regenerated on upgrade: left out of rendering and validation.
BOOTSTRAP_FILES = ("gotk-components.yaml", "gotk-sync.yaml")


def is_bootstrap_dir(directory: Path) -> bool:
    return any((directory / name).is_file() for name in BOOTSTRAP_FILES)


def _generated_by_bootstrap(path: Path) -> bool:
    return any(is_bootstrap_dir(parent) for parent in path.parents)


def yaml_files(root: Path) -> list[Path]:
    """The YAML files under root, without those `flux bootstrap` generated."""
    return sorted(
        p
        for ext in ("*.yaml", "*.yml")
        for p in root.rglob(ext)
        if p.is_file() and not _generated_by_bootstrap(p)
    )


def find_flux_kustomizations(root: Path = REPO_ROOT) -> list[FluxKustomization]:
    """Every Flux Kustomization under ``kubernetes/`` (the entry and each app's ks.yaml)."""
    found = []
    for file in yaml_files(root / "kubernetes"):
        for doc in load_documents(file):
            if is_flux_kustomization(doc):
                found.append(FluxKustomization.from_doc(doc, file, root))
    return found


def find_kustomization_dirs(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(
        {
            p.parent
            for p in (root / "kubernetes").rglob("*")
            if p.name in KUSTOMIZATION_FILES and not _generated_by_bootstrap(p)
        }
    )


# --------------------------------------------------------------------------- kustomize


VENV_BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"  # where ./dev installs the Go tools


def find_tool(name: str, env: str) -> str | None:
    """A Go-installed tool: ``$env``, else on PATH, else the project's ``.venv/bin`` (where ``./dev``
    installs it), else ``~/go/bin/<name>``; None if none is a file."""
    venv = VENV_BIN / name
    for candidate in (os.environ.get(env), shutil.which(name), str(venv), str(Path.home() / "go" / "bin" / name)):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def kustomize_binary() -> str:
    found = find_tool("kustomize", "KUSTOMIZE")
    if found is None:
        raise RenderError(
            "kustomize not found: install it (go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.1) "
            "or set KUSTOMIZE"
        )
    return found


def _flux_generated_resources(directory: Path) -> list[Path]:
    """What Flux puts in the kustomization it generates for a path that has none."""
    resources: list[Path] = []

    def scan(current: Path) -> None:
        for entry in sorted(current.iterdir()):
            if entry.is_dir():
                if is_bootstrap_dir(entry):
                    continue  # flux bootstrap's own files (BOOTSTRAP_FILES)
                if has_kustomization(entry):
                    resources.append(entry)
                else:
                    scan(entry)
            elif entry.suffix in (".yaml", ".yml"):
                docs = load_documents(entry)
                if docs and all("apiVersion" in d and "kind" in d for d in docs):
                    resources.append(entry)

    scan(directory)
    return resources


def kustomize_build(
    directory: Path,
    *,
    namespace: str | None = None,
    images: Mapping[str, str] | None = None,
    root: Path = REPO_ROOT,
) -> list[Resource]:
    """``kustomize build --load-restrictor=LoadRestrictionsNone`` through a throw-away overlay that adds
    the namespace (as Flux's targetNamespace does), image overrides, and origin annotations."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise RenderError(f"{display_path(directory, root)}: no such directory")
    with tempfile.TemporaryDirectory(prefix="render-") as tmp:
        overlay = Path(tmp)
        component = is_component(directory)
        if has_kustomization(directory):
            resources = [directory]
        else:
            resources = _flux_generated_resources(directory)
        kustomization: dict[str, Any] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            # a Component alone renders the resources it adds (its patches find nothing to patch here;
            # tests/manifests render it applied to the app as well)
            "components" if component else "resources": [os.path.relpath(r, overlay) for r in resources],
            "buildMetadata": ["originAnnotations"],
        }
        if namespace:
            kustomization["namespace"] = namespace
        if images:
            kustomization["images"] = [_image_override(old, new) for old, new in images.items()]
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        proc = subprocess.run(
            [kustomize_binary(), "build", "--load-restrictor=LoadRestrictionsNone", str(overlay)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            message = proc.stderr.strip().replace(str(overlay) + "/", "")
            raise RenderError(f"{display_path(directory, root)}: kustomize build failed: {message}")
        rendered = []
        for doc in yaml.safe_load_all(proc.stdout):
            if isinstance(doc, dict):
                rendered.append(Resource(doc, _pop_origin(doc, overlay)))
        return rendered


def _image_override(old: str, new: str) -> dict[str, str]:
    override = {"name": old}
    name, _, digest = new.partition("@")
    if digest:
        override["digest"] = digest
    repo, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        override["newName"], override["newTag"] = repo, tag
    else:
        override["newName"] = name
    return override


def _pop_origin(doc: dict[str, Any], overlay: Path) -> Path | None:
    metadata = doc.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    origin = annotations.pop(ORIGIN_ANNOTATION, None)
    if not annotations:
        metadata.pop("annotations", None)
    if not origin:
        return None
    path = (yaml.safe_load(origin) or {}).get("path")
    return (overlay / path).resolve() if path else None


# --------------------------------------------------------------------------- Flux substitution

_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}")
_EXPR = re.compile(r"^(?P<name>[_A-Za-z][_A-Za-z0-9]*)(?:(?P<op>:=|:-|=|-)(?P<default>.*))?$", re.DOTALL)


def substitute_text(text: str, variables: Mapping[str, str], *, where: str = "", strict: bool = True) -> str:
    """Flux's postBuild substitution on one resource's YAML text."""
    for name in variables:
        if not VAR_NAME.match(name):
            raise RenderError(f"{where}: postBuild.substitute: '{name}' is not a valid variable name", where)

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        expr = match.group(1)
        parsed = _EXPR.match(expr)
        if not parsed:
            raise RenderError(f"{where}: unsupported substitution '${{{expr}}}'", where)
        name, op, default = parsed.group("name", "op", "default")
        value = variables.get(name)
        if op in (":=", ":-") and not value:
            return default
        if op in ("=", "-") and value is None:
            return default
        if value is None:
            if strict:
                raise RenderError(
                    f"{where}: variable '${{{name}}}' is not set by postBuild.substitute and has no default",
                    where,
                )
            return ""
        return value

    return _TOKEN.sub(replace, text)


def substitution_disabled(doc: Mapping[str, Any]) -> bool:
    metadata = doc.get("metadata") or {}
    for field in ("annotations", "labels"):
        if (metadata.get(field) or {}).get(SUBSTITUTE_KEY) == "disabled":
            return True
    return False


def apply_substitution(
    resources: Iterable[Resource], variables: Mapping[str, str], *, root: Path = REPO_ROOT
) -> list[Resource]:
    result = []
    for resource in resources:
        if substitution_disabled(resource.doc):
            result.append(resource)
            continue
        where = display_path(resource.origin, root) if resource.origin else f"{resource.kind}/{resource.name}"
        text = substitute_text(yaml.safe_dump(resource.doc, sort_keys=False), variables, where=where)
        result.append(Resource(yaml.safe_load(text), resource.origin))
    return result


# --------------------------------------------------------------------------- rendering


def render_flux_kustomization(
    ks: FluxKustomization, *, images: Mapping[str, str] | None = None, root: Path = REPO_ROOT
) -> list[Resource]:
    """What Flux applies for one Kustomization (without decrypting Secrets)."""
    if ks.path is None:
        raise RenderError(f"{display_path(ks.source_file, root)}: Kustomization '{ks.name}' has no spec.path")
    resources = kustomize_build(ks.path, namespace=ks.target_namespace, images=images, root=root)
    if ks.substitute is not None:
        resources = apply_substitution(resources, ks.substitute, root=root)
    return resources


def resolve_target(target: str | Path, root: Path = REPO_ROOT) -> FluxKustomization | Path:
    """Turn a user's path into what to render.

    Accepts a Flux ks.yaml, a folder holding one (``kubernetes/apps/ai-services/kokoro-api``), a
    short app path (``ai-services/kokoro-api``), or a folder that is some Kustomization's ``spec.path``.
    Anything else is a plain kustomize folder (rendered without substitution).
    """
    candidates = [Path(target), root / target, root / "kubernetes" / "apps" / target]
    path = next((c.resolve() for c in candidates if c.exists()), None)
    if path is None:
        raise RenderError(f"{target}: not found (tried {', '.join(str(c) for c in candidates)})")
    if path.is_dir() and (path / "ks.yaml").is_file():
        path = path / "ks.yaml"
    if path.is_file():
        kss = [
            FluxKustomization.from_doc(d, path, root)
            for d in load_documents(path)
            if is_flux_kustomization(d)
        ]
        if len(kss) > 1:
            # An app's ks.yaml may hold helpers (the API keys' Kustomization): the app is the one named
            # like its folder.
            kss = [ks for ks in kss if ks.name == path.parent.name] or kss
        if len(kss) != 1:
            raise RenderError(
                f"{display_path(path, root)}: expected one Flux Kustomization (or one named "
                f"'{path.parent.name}'), found {len(kss)}"
            )
        return kss[0]
    for ks in find_flux_kustomizations(root):
        if ks.path == path:
            return ks
    return path


def render_path(
    target: str | Path, *, images: Mapping[str, str] | None = None, root: Path = REPO_ROOT
) -> list[Resource]:
    resolved = resolve_target(target, root)
    if isinstance(resolved, FluxKustomization):
        return render_flux_kustomization(resolved, images=images, root=root)
    return kustomize_build(resolved, images=images, root=root)


def decrypt_secrets(resources: Iterable[Resource], *, root: Path = REPO_ROOT) -> list[Resource]:
    """Replace SOPS-encrypted Secrets by their plaintext (needs SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)."""
    sops = os.environ.get("SOPS") or shutil.which("sops")
    result = []
    for resource in resources:
        if "sops" not in resource.doc:
            result.append(resource)
            continue
        if not sops or resource.origin is None:
            raise RenderError(f"{resource.kind}/{resource.name}: SOPS-encrypted and sops is not available")
        env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"}
        proc = subprocess.run(
            [sops, "--decrypt", str(resource.origin)], capture_output=True, text=True, env=env, check=False
        )
        if proc.returncode != 0:
            raise RenderError(
                f"{display_path(resource.origin, root)}: sops --decrypt failed: {proc.stderr.strip()}"
            )
        doc = yaml.safe_load(proc.stdout)
        if resource.namespace:
            doc.setdefault("metadata", {})["namespace"] = resource.namespace
        result.append(Resource(doc, resource.origin))
    return result


def to_yaml(resources: Iterable[Resource | Mapping[str, Any]]) -> str:
    docs = [r.doc if isinstance(r, Resource) else r for r in resources]
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "target", help="ks.yaml, an app folder (ai-services/kokoro-api) or a kustomize folder"
    )
    parser.add_argument("--kind", action="append", help="only resources of this kind (repeatable)")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="kustomize images: override, e.g. ghcr.io/x/kokoro-api=localhost/kokoro-api:dev",
    )
    parser.add_argument("--decrypt", action="store_true", help="decrypt SOPS Secrets (for applying)")
    parser.add_argument("--skip-secrets", action="store_true", help="leave SOPS-encrypted Secrets out")
    args = parser.parse_args(argv)
    images = dict(item.split("=", 1) for item in args.image)
    try:
        resources = render_path(args.target, images=images or None)
        if args.skip_secrets:
            resources = [r for r in resources if "sops" not in r.doc]
        if args.decrypt:
            resources = decrypt_secrets(resources)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.kind:
        resources = [r for r in resources if r.kind in args.kind]
    sys.stdout.write(to_yaml(resources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
