"""Writes to Engine rows, made by the supervisors of the worker that owns the engines."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from inference.models import Engine
from registry.models import Block


def engine_register(*, block_id: str, node: str, gpu: str, endpoint: str, capacity: int, pid: int,
                    restarted: bool, block_pk: int | None = None) -> int:
    """(Re)start of an engine process: state starting; a restart bumps the counter. `block_pk`
    names the block (ids repeat across organizations); without it the id must be unique."""
    block = Block.objects.get(pk=block_pk) if block_pk is not None else Block.objects.get(block_id=block_id)
    engine, created = Engine.objects.get_or_create(
        node=node, endpoint=endpoint,
        defaults={"block": block, "gpu": gpu, "capacity": capacity, "pid": pid, "state": Engine.STARTING},
    )
    if not created:
        update = {"block": block, "gpu": gpu, "capacity": capacity, "pid": pid, "state": Engine.STARTING,
                  "load": 0.0, "started_at": timezone.now(), "last_heartbeat": timezone.now()}
        if restarted:
            update["restarts"] = F("restarts") + 1
        else:
            update["restarts"] = 0
        Engine.objects.filter(pk=engine.pk).update(**update)
    return engine.pk


def engine_set_state(*, engine_id: int, state: str, clear_pid: bool = False) -> None:
    update = {"state": state, "last_heartbeat": timezone.now()}
    if clear_pid:
        update["pid"] = None
    if state == Engine.DEAD:
        update["load"] = 0.0  # nothing runs on a dead engine; its last heartbeat's load is stale
    Engine.objects.filter(pk=engine_id).update(**update)


def engine_heartbeat(*, engine_id: int | None, load: float | None) -> None:
    if engine_id is None:
        return
    update: dict = {"last_heartbeat": timezone.now()}
    if load is not None:
        update["load"] = load
    Engine.objects.filter(pk=engine_id).update(**update)
