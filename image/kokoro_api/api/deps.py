"""Shared request dependencies: the loaded runtime (or 503 NotReady) and the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..admission import Admission
from ..config import Settings
from ..errors import NotReady
from ..runtime import Runtime


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_admission(request: Request) -> Admission:
    return request.app.state.admission


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    if not rt.ready or rt.synthesizer is None:
        raise NotReady("The model is still loading; retry shortly.", retry_after=2)
    return rt


SettingsDep = Annotated[Settings, Depends(get_settings)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
