"""Where a manager works: on a Switchboard server over HTTP (remote: a `base_url`), or on this
process's database (in-process: no `base_url`, see in_process.py).

The in-process module is imported here, inside `_in_process()`, and only when a manager without
a base_url is used. That is not a way round an import cycle: that module imports Django's
models, which cannot be imported before django.setup(), and a remote caller's plain script has
no Django settings at all (and must not need any). It is the SDK's only such import
(tests/test_layers.py lists this file; the "sdk-remote" contract in pyproject.toml names the edge).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from inference.backends.base import BackendError
from inference.sdk import inference as remote
from inference.sdk.http import RegistryError
from inference.sdk.remote_registry import Registry, RemoteRegistry


def _setup_django() -> None:
    """A plain script may only have set DJANGO_SETTINGS_MODULE (or nothing): the ORM needs the apps loaded."""
    import django
    from django.apps import apps

    if not apps.ready:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
        django.setup()


def _in_process() -> ModuleType:
    _setup_django()
    from inference.sdk import in_process

    return in_process


def registry_for(*, base_url: str | None, api_key: str | None, organization: Any) -> Registry:
    if base_url:
        return RemoteRegistry(base_url, api_key)
    return _in_process().InProcessRegistry(organization)


def runtime_vm(organization: str | None) -> Any:
    """The in-process VM of inference.sdk.Runtime (in_process.InProcessVM)."""
    return _in_process().InProcessVM(organization)


def run_registry_block(*, inference_url: str | None, api_key: str | None, block_id: str, input_data: dict,
                       session_id: str, frame_ptr: bytes) -> str:
    """A registry block's answer: run by the server at `inference_url`, else in this process."""
    try:
        if inference_url:
            return remote.run_ai_inference(base_url=inference_url, api_key=api_key, block_id=block_id,
                                           input_data=input_data, session_id=session_id, frame_ptr=frame_ptr)
        return _in_process().run_ai_inference(block_id=block_id, input_data=input_data, session_id=session_id,
                                              frame_ptr=frame_ptr)
    except BackendError as exc:
        raise _as_registry_error(exc, remote=bool(inference_url)) from None


def estimate_registry_block(*, inference_url: str | None, api_key: str | None, block_id: str, session_id: str,
                            query: dict) -> dict:
    try:
        if inference_url:
            return remote.estimate(base_url=inference_url, api_key=api_key, block_id=block_id,
                                   session_id=session_id, query=query)
        return _in_process().estimate(block_id=block_id, session_id=session_id, query=query)
    except BackendError as exc:
        raise _as_registry_error(exc, remote=bool(inference_url)) from None


def _as_registry_error(exc: BackendError, *, remote: bool) -> RegistryError:
    """Every SDK failure is a RegistryError; remotely its status is the one the server answered
    (None when it was not reached)."""
    return RegistryError(exc.message, exc.upstream_status if remote else exc.status)
