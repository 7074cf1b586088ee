"""End to end with podman: base image -> podman build -> `podman kube play` of the rendered Deployment ->
/readyz -> non-root, read-only root filesystem -> smoke test green -> `podman kube down` -> a synthesis with
`--network none`.

Marked `e2e` (slow: a cold build takes ~6-10 min on 2 cores). The build is the session fixture `podman_image`
(conftest.py), shared with the compose test. Skipped only when podman is not installed, and never then in
CI: with CI set or KOKORO_REQUIRE_E2E=1 a missing podman is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "scripts" / "e2e_podman.py"
SIZE_BUDGET = 600 * 1000 * 1000

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1800)
def test_image_runs_the_rendered_deployment(podman_image, tmp_path):
    report_path, junit = tmp_path / "e2e.json", tmp_path / "smoke.xml"
    proc = subprocess.run(  # the image is built by the session fixture (conftest.py), shared with compose
        [sys.executable, str(E2E), "--skip-build", "--tag", podman_image, "--report", str(report_path),
         "--junit", str(junit)],
        cwd=ROOT,
        timeout=1750,
    )
    report = json.loads(report_path.read_text())
    print(json.dumps({k: v for k, v in report.items() if k != "smoke"}, indent=2))
    assert proc.returncode == 0, report.get("error")
    assert report["passed"] is True
    # the smoke test ran every check against the pod, and all passed
    checks = report["smoke"]["checks"]
    assert len(checks) >= 12 and all(c["status"] == "pass" for c in checks), checks
    # non-root, read-only root filesystem, capabilities dropped (see security_checks in the script)
    security = " ".join(report["security"])
    assert "uid=10001" in security and "write to / refused" in security
    # nothing is fetched at run time: the image synthesizes with networking disabled
    assert report["offline"].startswith("--network none:")
    # torn down: no pod of the Deployment is left
    assert "kube_down" in report["steps"]
    left = subprocess.run(
        ["podman", "pod", "ps", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        env={**os.environ, "CONTAINERS_CONF": str(ROOT / "image" / "containers.conf")},
    )
    assert "kokoro-api-pod" not in left.stdout
    assert report["image_size_bytes"] <= SIZE_BUDGET, f"image is {report['image_size_bytes'] / 1e6:.0f} MB"
    assert report["total_s"] < 1800
