"""The request log: one row per finished chat request, written off the request path.

`record()` appends to an in-process list (no database, no await); a task on the serving event loop
writes the list in one COPY (PostgreSQL) every FLUSH_INTERVAL_S, like inference.metrics, and once more
when the loop closes or the interpreter exits. The prompt and answer travel in memory with every
entry, and the flush drops them unless the calling organization turned content logging on
(RequestLogSettings.store_content): one query per flush decides, none per request.

Retention: rows older than settings.REQUEST_LOG_RETENTION_DAYS are deleted by the flusher at most
once per PRUNE_INTERVAL_S, and by `manage.py prune_request_log`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from inference.models import RequestLogEntry, RequestLogSettings
from registry.asyncdb import in_db_thread
from registry.jsonsafe import without_nul
from registry.models import ApiKey, Block, Organization
from registry.outages import DATABASE_ERRORS

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
PRUNE_INTERVAL_S = 3600.0
# Entries kept while the database cannot take them; past this the oldest are dropped (counted).
MAX_PENDING = 50_000
# A prompt or answer kept longer than this is cut (the log is for looking, not for replay).
MAX_CONTENT_CHARS = 20_000


@dataclass
class Pending:
    organization_pk: int
    created_at: float  # time.time()
    request_id: str
    api_key_pk: int | None
    key_label: str
    block_pk: int | None
    model: str
    status: int
    stream: bool
    latency_ms: float
    ttft_ms: float | None
    tokens_in: int
    tokens_out: int
    route: dict[str, Any] | None
    error: str
    prompt: Any = None
    answer: str | None = None


_pending: list[Pending] = []
_lock = threading.Lock()
_flushers: dict[int, asyncio.Task] = {}
_last_prune = 0.0
dropped_entries = 0


def _drop_overflow() -> None:
    """Under _lock: a long database outage costs bounded memory; the oldest entries go first."""
    global dropped_entries
    excess = len(_pending) - MAX_PENDING
    if excess > 0:
        del _pending[:excess]
        dropped_entries += excess


def record(entry: Pending) -> None:
    """Queue one finished request. Cheap and synchronous: never touches the database."""
    with _lock:
        _pending.append(entry)
        _drop_overflow()
    _ensure_flusher()


def _ensure_flusher() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # A sync caller: the exit hook or flush_now() writes it.
    task = _flushers.get(id(loop))
    if task is None or task.done():
        _flushers[id(loop)] = loop.create_task(_flush_forever())


async def _flush_forever() -> None:
    failing = False
    try:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await aflush()
                if time.monotonic() - _last_prune > PRUNE_INTERVAL_S:
                    await aprune()
                failing = False
            except DATABASE_ERRORS as exc:
                if not failing:
                    log.warning("request log flush failed, keeping the entries for the next try: %s", exc)
                failing = True
            except Exception:
                log.exception("request log flush failed")
    except asyncio.CancelledError:
        try:
            await aflush()
        except Exception:
            log.exception("request log flush at shutdown failed")
        raise


def _take() -> list[Pending]:
    global _pending
    with _lock:
        taken, _pending = _pending, []
    return taken


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_CONTENT_CHARS else text[:MAX_CONTENT_CHARS] + "…"


# Plain parameter tuples written by COPY (PostgreSQL) or executemany (SQLite): building a model instance per row and
# letting bulk_create compile it cost ~250 us of the serving process's CPU per request (measured).
_COLUMNS = ("organization_id", "created_at", "request_id", "api_key_id", "key_label", "block_id", "model", "status",
            "stream", "latency_ms", "ttft_ms", "tokens_in", "tokens_out", "route", "error", "prompt", "answer")


def _insert(rows: list[tuple[Any, ...]]) -> None:
    quote = connection.ops.quote_name
    table, columns = quote(RequestLogEntry._meta.db_table), ", ".join(quote(c) for c in _COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: a few microseconds a row, where an INSERT's parameters cost tens.
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})", rows)


# Without NUL characters, which PostgreSQL's text and jsonb cannot hold (a chat message may carry them:
# the gateway passes them upstream). The same stripping as an agent run's events and output.
_scrub = without_nul


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(_scrub(value), ensure_ascii=False, default=str)


def _row(entry: Pending, *, keep: bool, key_ok: bool, block_ok: bool) -> tuple[Any, ...]:
    prompt = entry.prompt if keep else None
    if isinstance(prompt, str):
        prompt = _cut(prompt)
    created = connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(entry.created_at, tz=UTC))
    return (entry.organization_pk, created, _scrub(entry.request_id or "")[:64], entry.api_key_pk if key_ok else None,
            _scrub(entry.key_label)[:130], entry.block_pk if block_ok else None, _scrub(entry.model)[:300],
            entry.status, entry.stream, entry.latency_ms, entry.ttft_ms, max(0, entry.tokens_in),
            max(0, entry.tokens_out), _json(entry.route), _scrub(entry.error)[:2000], _json(prompt),
            _scrub(_cut(entry.answer)) if keep else None)


def flush_now() -> int:
    """Write everything pending at once; returns the number of rows. Sync: call from a thread."""
    global dropped_entries
    entries = _take()
    if not entries:
        return 0
    try:
        # What was deleted since (a test's organization, a removed block or key) must not fail the batch.
        organizations = set(Organization.objects.filter(pk__in={e.organization_pk for e in entries})
                            .values_list("pk", flat=True))
        blocks = set(Block.objects.filter(pk__in={e.block_pk for e in entries if e.block_pk})
                     .values_list("pk", flat=True))
        keys = set(ApiKey.objects.filter(pk__in={e.api_key_pk for e in entries if e.api_key_pk})
                   .values_list("pk", flat=True))
        keeping = set(RequestLogSettings.objects.filter(organization_id__in=organizations, store_content=True)
                      .values_list("organization_id", flat=True))
        rows = [_row(entry, keep=entry.organization_pk in keeping, key_ok=entry.api_key_pk in keys,
                     block_ok=entry.block_pk in blocks)
                for entry in entries if entry.organization_pk in organizations]
        if rows:
            _insert(rows)
    except DATABASE_ERRORS:
        with _lock:
            _pending[:0] = entries  # The database is away: the next try writes them, oldest first.
            _drop_overflow()
        raise
    except DatabaseError:
        # Anything else the database refuses would be refused again on every retry and hold up
        # every later entry: this batch goes (counted), the log goes on.
        with _lock:
            dropped_entries += len(entries)
        log.exception("request log: a batch of %d entries was refused and dropped", len(entries))
        return 0
    return len(rows)


aflush = in_db_thread(flush_now)


def request_log_prune(*, now: datetime | None = None) -> int:
    """Delete the rows older than the retention; returns how many went."""
    global _last_prune
    _last_prune = time.monotonic()
    cutoff = (now or timezone.now()) - timedelta(days=settings.REQUEST_LOG_RETENTION_DAYS)
    deleted, _ = RequestLogEntry.objects.filter(created_at__lt=cutoff).delete()
    return deleted


aprune = in_db_thread(request_log_prune)


def discard_pending() -> None:
    _take()


def pending_count() -> int:
    with _lock:
        return len(_pending)


@atexit.register
def _flush_at_exit() -> None:
    if not _pending:
        return
    try:
        flush_now()
    except Exception:
        log.exception("request log flush at exit failed")


def request_log_settings_update(*, organization: Organization, store_content: bool) -> RequestLogSettings:
    """Turn prompt and answer logging on or off for `organization` (the caller checked it is an owner).
    Turning it off also forgets what was kept: off means the organization's content is not stored."""
    with transaction.atomic():
        config, _ = RequestLogSettings.objects.update_or_create(organization=organization,
                                                                defaults={"store_content": store_content})
        if not store_content:
            (RequestLogEntry.objects.filter(organization=organization)
             .filter(Q(prompt__isnull=False) | Q(answer__isnull=False)).update(prompt=None, answer=None))
    return config


def request_log_settings_get(organization: Organization) -> RequestLogSettings:
    return (RequestLogSettings.objects.filter(organization=organization).first()
            or RequestLogSettings(organization=organization))
