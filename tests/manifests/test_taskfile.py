"""The Taskfile wires the scripts: every task has a description and its preconditions."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .conftest import REPO, tool

REQUIRED = {"kubernetes:kubeconform", "flux:apply", "serve", "test", "smoke", "image:build", "bench", "load"}


def all_tasks() -> dict[str, dict]:
    root = yaml.safe_load((REPO / "Taskfile.yml").read_text())
    tasks = dict(root["tasks"].items())
    for namespace, include in root.get("includes", {}).items():
        path = include if isinstance(include, str) else include["taskfile"]
        for name, body in yaml.safe_load((REPO / path).read_text())["tasks"].items():
            tasks[f"{namespace}:{name}"] = body
    return tasks


def test_required_tasks_exist_with_desc_and_preconditions() -> None:
    tasks = all_tasks()
    assert REQUIRED <= set(tasks), REQUIRED - set(tasks)
    for name, body in tasks.items():
        assert body.get("desc"), f"{name}: no desc"
        if name != "default":
            assert body.get("preconditions"), f"{name}: no preconditions"


def test_flux_apply_requires_path_and_applies_server_side() -> None:
    task = all_tasks()["flux:apply"]
    assert task["requires"]["vars"] == ["path"]
    assert "scripts/render.py" in task["cmd"] and "--server-side" in task["cmd"]


def test_task_lists_everything() -> None:
    binary = tool("task")
    if binary is None:
        pytest.skip("task (go-task-bin) not installed")
    result = subprocess.run(
        [binary, "--list", "--color=false"], cwd=REPO, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for name in REQUIRED:
        assert f"* {name}:" in result.stdout, name


def test_flux_apply_refuses_without_path() -> None:
    binary = tool("task")
    if binary is None:
        pytest.skip("task (go-task-bin) not installed")
    result = subprocess.run(
        [binary, "flux:apply"], cwd=REPO, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode != 0 and "path" in result.stderr
