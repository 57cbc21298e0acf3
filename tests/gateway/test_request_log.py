"""The request log: the gateway queues one entry per finished request in memory, a batched flush
writes them, prompts and answers are kept only for an organization that asked, and old rows go."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.core.management import call_command
from django.utils import timezone

from inference import request_log
from inference.backends.openai_compat import close_sessions
from inference.gateway.errors import OpenAIError
from inference.gateway.pipeline import ChatCall, prepare
from inference.gateway.validation import parse_chat_body
from inference.models import RequestLogEntry, RequestLogSettings
from inference.planner.routing import Route
from registry.principal import Principal
from registry.tenancy.policy import Admission, Policy
from tests.support.chat_requests import principal_of
from webapp.asgi import application


@pytest.fixture(autouse=True)
def _no_entries_left_behind():
    request_log.discard_pending()
    yield
    request_log.discard_pending()


@pytest.fixture(autouse=True)
async def _close_pooled_sessions():
    yield
    await close_sessions()


def entry(org, **fields) -> request_log.Pending:
    values = dict(organization_pk=org.pk, created_at=time.time(), request_id="r-1", api_key_pk=None, key_label="k",
                  block_pk=None, model="m", status=200, stream=False, latency_ms=12.5, ttft_ms=None, tokens_in=3,
                  tokens_out=4, route=None, error="", prompt=[{"role": "user", "content": "secret"}], answer="reply")
    return request_log.Pending(**(values | fields))


def test_recording_never_touches_the_database_until_a_flush(org, django_assert_num_queries):
    with django_assert_num_queries(0):
        request_log.record(entry(org))
    assert request_log.pending_count() == 1
    assert request_log.flush_now() == 1
    assert request_log.pending_count() == 0
    row = RequestLogEntry.objects.get(organization=org)
    assert (row.status, row.latency_ms, row.tokens_in, row.tokens_out) == (200, 12.5, 3, 4)


def test_a_batch_of_many_requests_is_one_insert(org, django_assert_max_num_queries):
    for i in range(200):
        request_log.record(entry(org, request_id=f"r-{i}"))
    # The existence checks (organizations, blocks, keys, content settings) and one INSERT.
    with django_assert_max_num_queries(6):
        assert request_log.flush_now() == 200


def test_prompts_and_answers_are_dropped_unless_the_organization_keeps_them(org, other_org):
    RequestLogSettings.objects.create(organization=other_org, store_content=True)
    request_log.record(entry(org))
    request_log.record(entry(other_org))
    request_log.flush_now()
    mine = RequestLogEntry.objects.get(organization=org)
    assert mine.prompt is None and mine.answer is None
    kept = RequestLogEntry.objects.get(organization=other_org)
    assert kept.prompt == [{"role": "user", "content": "secret"}] and kept.answer == "reply"


def test_turning_content_off_forgets_what_was_kept(org):
    request_log.request_log_settings_update(organization=org, store_content=True)
    request_log.record(entry(org))
    request_log.flush_now()
    assert RequestLogEntry.objects.get(organization=org).answer == "reply"
    request_log.request_log_settings_update(organization=org, store_content=False)
    row = RequestLogEntry.objects.get(organization=org)
    assert row.prompt is None and row.answer is None


def test_an_entry_of_a_deleted_block_or_organization_does_not_fail_the_batch(org, other_org):
    request_log.record(entry(org, block_pk=987654321, api_key_pk=987654321))
    request_log.record(entry(other_org))
    other_org.delete()
    assert request_log.flush_now() == 1
    row = RequestLogEntry.objects.get(organization=org)
    assert row.block_id is None and row.api_key_id is None
    assert request_log.pending_count() == 0


def test_rows_past_the_retention_are_pruned_by_the_command(org, settings):
    settings.REQUEST_LOG_RETENTION_DAYS = 3
    request_log.record(entry(org, created_at=(timezone.now() - timedelta(days=4)).timestamp(), request_id="old"))
    request_log.record(entry(org, created_at=(timezone.now() - timedelta(days=2)).timestamp(), request_id="new"))
    request_log.flush_now()
    call_command("prune_request_log")
    assert list(RequestLogEntry.objects.values_list("request_id", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
async def test_the_gateway_logs_a_served_request_with_its_key_tokens_and_answer(owner, upstream_block):
    block = await sync_to_async(upstream_block)(owner.organization, "chunks3", block_id="acme-logged")
    await RequestLogSettings.objects.acreate(organization=owner.organization, store_content=True)
    principal = await sync_to_async(principal_of)(owner)
    call = await prepare(principal, {"model": "acme-logged", "messages": [{"role": "user", "content": "hi"}]},
                         request_id="req-42")
    await call.complete()
    assert request_log.pending_count() == 1
    await request_log.aflush()
    row = await RequestLogEntry.objects.aget(request_id="req-42")
    assert (row.status, row.block_id, row.model, row.stream) == (200, block.pk, "acme-logged", False)
    assert row.api_key_id == principal.api_key.pk and "alice-key" in row.key_label
    assert row.tokens_out == call.usage["completion_tokens"] and row.tokens_out > 0
    assert row.answer.startswith("tok0") and row.prompt == [{"role": "user", "content": "hi"}]
    assert row.latency_ms > 0 and row.ttft_ms is None and row.route is None


@pytest.mark.django_db(transaction=True)
async def test_the_gateway_logs_a_failed_request_with_the_status_and_error_the_client_got(org, upstream_block):
    await sync_to_async(upstream_block)(org, "status503", block_id="acme-broken")
    call = await prepare(Principal(organization=org),
                         {"model": "acme-broken", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                         request_id="req-43")
    with pytest.raises(OpenAIError) as caught:
        async for _ in call.stream():
            pass
    await request_log.aflush()
    row = await RequestLogEntry.objects.aget(request_id="req-43")
    assert row.status == caught.value.status and row.status >= 500 and row.stream
    assert row.error == caught.value.message and row.prompt is None and row.answer is None


@pytest.mark.django_db(transaction=True)
async def test_a_request_routed_by_auto_logs_the_route_it_took(org, upstream_block):
    block = await sync_to_async(upstream_block)(org, "chunks2", block_id="acme-routed")
    chat = parse_chat_body({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    route = Route(block=block, model="acme-routed", mode="tags", policy="tags", score=0.5)
    call = ChatCall(principal=Principal(organization=org), chat=chat, block=block,
                    admission=Admission(policy=Policy()), route=route)
    call.request_id = "req-44"
    await call.complete()
    await request_log.aflush()
    row = await RequestLogEntry.objects.aget(request_id="req-44")
    assert row.route == route.to_dict() and row.route["mode"] == "tags" and row.model == "acme-routed"


def test_what_waits_for_the_database_is_bounded_and_the_oldest_entries_go_first(org, monkeypatch):
    monkeypatch.setattr(request_log, "MAX_PENDING", 5)
    dropped = request_log.dropped_entries
    for i in range(20):
        request_log.record(entry(org, request_id=f"r-{i}"))
    assert request_log.pending_count() == 5 and request_log.dropped_entries == dropped + 15
    request_log.flush_now()
    kept = RequestLogEntry.objects.order_by("request_id").values_list("request_id", flat=True)
    assert list(kept) == ["r-15", "r-16", "r-17", "r-18", "r-19"]


def test_nul_characters_never_fail_a_batch(org):
    RequestLogSettings.objects.create(organization=org, store_content=True)
    request_log.record(entry(org, model="bad\x00model", error="e\x00", answer="a\x00b",
                             prompt=[{"role": "user", "content": "x\x00y"}], route={"reason": "r\x00"}))
    assert request_log.flush_now() == 1
    row = RequestLogEntry.objects.get(organization=org)
    assert (row.model, row.error, row.answer) == ("badmodel", "e", "ab")
    assert row.prompt == [{"role": "user", "content": "xy"}] and row.route == {"reason": "r"}


@pytest.mark.django_db(transaction=True)
async def test_a_request_refused_before_any_block_ran_is_logged_with_its_status(owner):
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    communicator = HttpCommunicator(application, "POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                                    headers=[(b"authorization", f"Bearer {owner.key}".encode()),
                                             (b"content-type", b"application/json")])
    response = await communicator.get_response(timeout=20)
    assert response["status"] == 404
    await request_log.aflush()
    row = await RequestLogEntry.objects.aget(organization=owner.organization)
    assert (row.status, row.model, row.block_id, row.stream) == (404, "no-such-model", None, True)
    assert "no-such-model" in row.error and row.key_label.startswith("alice-key")
