"""The context window API: sessions per (organization, session_id), appended, read, trimmed to a
block's context and deleted; and /v1/chat/completions requests that name a session_id."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from channels.testing import HttpCommunicator
from django.conf import settings
from django.core.management import call_command

from inference.context_window.models import ChatSession
from tests.factories import BlockFactory
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]


def append(party, session_id: str, messages: list[dict]):
    return party.client().post(f"/api/sessions/{session_id}/messages", {"messages": messages}, format="json")


def read(party, session_id: str):
    return party.client().get(f"/api/sessions/{session_id}")


def test_a_member_appends_and_reads_a_session_in_order(member):
    first = append(member, "s-1", HELLO)
    assert first.status_code == 201, first.json()
    append(member, "s-1", [{"role": "assistant", "content": "hi"}])
    data = read(member, "s-1").json()["data"]
    assert data["sessionId"] == "s-1"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("system", "Be brief."), ("user", "hello"), ("assistant", "hi")]
    assert [s["sessionId"] for s in member.client().get("/api/sessions").json()["data"]] == ["s-1"]


def test_another_organizations_session_of_the_same_name_is_404_and_stays_apart(owner, outsider):
    append(owner, "shared-name", HELLO)
    assert read(outsider, "shared-name").status_code == 404
    assert outsider.client().delete("/api/sessions/shared-name").status_code == 404
    trim = outsider.client().post("/api/sessions/shared-name/trim", {"model": "x", "max_tokens": 10}, format="json")
    assert trim.status_code == 404
    # Writing the same name makes the outsider's own session: it never sees or touches the owner's.
    assert append(outsider, "shared-name", [{"role": "user", "content": "mine"}]).status_code == 201
    assert [m["content"] for m in read(outsider, "shared-name").json()["data"]["messages"]] == ["mine"]
    assert len(read(owner, "shared-name").json()["data"]["messages"]) == 2
    assert [s["sessionId"] for s in outsider.client().get("/api/sessions").json()["data"]] == ["shared-name"]


def test_deleting_a_session_takes_an_owner_or_whoever_started_it(owner, member):
    append(owner, "owners", HELLO)
    append(member, "members", HELLO)
    assert member.client().delete("/api/sessions/owners").status_code == 403
    assert read(owner, "owners").status_code == 200
    assert member.client().delete("/api/sessions/members").status_code == 200
    assert owner.client().delete("/api/sessions/owners").status_code == 200
    assert not ChatSession.objects.exists()
    assert owner.client().delete("/api/sessions/owners").status_code == 404


@pytest.mark.parametrize("session_id,messages,problem", [
    ("bad!id", HELLO, "session id"),
    ("x" * 129, HELLO, "session id"),
    ("ok", [], "'messages' must be a non-empty list"),
    ("ok", [{"role": "tool", "content": "x"}], "messages[0].role"),
    ("ok", [{"role": "user", "content": 5}], "messages[0].content"),
    ("ok", "hello", "'messages' must be a non-empty list"),
])
def test_bad_appends_are_400s_naming_the_problem(member, session_id, messages, problem):
    response = append(member, session_id, messages)
    assert response.status_code == 400
    assert response.json()["success"] is False and problem in response.json()["message"]
    assert not ChatSession.objects.exists()


def test_trim_drops_the_oldest_turns_but_keeps_the_system_message(owner, member):
    BlockFactory(organization=owner.organization, block_id="small", metadata={"contextLength": 60})
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i:02d} " + "x" * 28}
             for i in range(10)]
    append(member, "long", [{"role": "system", "content": "Be brief."}, *turns])
    # Without a tokenizer each message costs ceil(40 / 4) + 4 = 14 tokens, the system one 7, plus 2.
    trimmed = member.client().post("/api/sessions/long/trim", {"model": "small", "reserve": 9}, format="json")
    assert trimmed.status_code == 200, trimmed.json()
    result = trimmed.json()["data"]
    assert result == {"removed": 7, "kept": 4, "tokens": 51, "limit": 60, "reserve": 9, "fits": True,
                      "tokenCounting": "approx: ceil(chars/4) + 4 per message + 2"}
    kept = [m["content"] for m in read(member, "long").json()["data"]["messages"]]
    assert kept == ["Be brief.", turns[7]["content"], turns[8]["content"], turns[9]["content"]]
    again = member.client().post("/api/sessions/long/trim", {"model": "small", "max_tokens": 1000}, format="json")
    assert again.json()["data"]["removed"] == 0


def test_trim_needs_a_context_length_and_a_block_the_caller_may_use(owner, outsider):
    BlockFactory(organization=owner.organization, block_id="nolimit")
    BlockFactory(organization=outsider.organization, block_id="theirs", metadata={"contextLength": 100})
    append(owner, "t", HELLO)
    no_limit = owner.client().post("/api/sessions/t/trim", {"model": "nolimit"}, format="json")
    assert no_limit.status_code == 422 and "declares no context length" in no_limit.json()["message"]
    foreign = owner.client().post("/api/sessions/t/trim", {"model": "theirs"}, format="json")
    assert foreign.status_code == 404
    no_room = owner.client().post("/api/sessions/t/trim", {"model": "nolimit", "max_tokens": 5, "reserve": 5},
                                  format="json")
    assert no_room.status_code == 422 and "leaves no room" in no_room.json()["message"]


@pytest.mark.slow
def test_trim_counts_with_the_builtin_models_own_tokenizer(owner):
    call_command("load_builtin_blocks")
    append(owner, "smol", [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"},
                           {"role": "user", "content": "and now?"}])
    trimmed = owner.client().post("/api/sessions/smol/trim",
                                  {"model": settings.SWITCHBOARD_BUILTIN_BLOCK_ID, "max_tokens": 100}, format="json")
    result = trimmed.json()["data"]
    assert result["tokenCounting"] == "llamacpp tokenizer"
    assert result["removed"] == 1 and result["fits"] and 0 < result["tokens"] <= 100
    whole = owner.client().post("/api/sessions/smol/trim", {"model": settings.SWITCHBOARD_BUILTIN_BLOCK_ID},
                                format="json").json()["data"]
    assert whole["limit"] == settings.LLAMACPP_CONTEXT and whole["removed"] == 0


async def chat(key: str, body: dict) -> tuple[int, bytes]:
    communicator = HttpCommunicator(application, "POST", "/v1/chat/completions", body=orjson.dumps(body),
                                    headers=[(b"authorization", f"Bearer {key}".encode()),
                                             (b"content-type", b"application/json")])
    response = await communicator.get_response(timeout=30)
    return response["status"], response["body"]


async def test_a_chat_request_naming_a_session_gets_its_history_and_appends_its_turn(owner, member, outsider,
                                                                                    fake_upstream):
    await asyncio.to_thread(BlockFactory, organization=owner.organization, block_id="up", backend_type="openai",
                            backend_config={"base_url": fake_upstream.base_url("ok-chunks2")})
    await asyncio.to_thread(append, owner, "conv", HELLO)
    status, _ = await chat(member.key, {"model": "up", "session_id": "conv",
                                        "messages": [{"role": "system", "content": "Be brief."},
                                                     {"role": "user", "content": "again"}]})
    assert status == 200
    sent = fake_upstream.stats.last_body["messages"]
    assert [m["content"] for m in sent] == ["Be brief.", "hello", "Be brief.", "again"]
    status, _ = await chat(owner.key, {"model": "up", "session_id": "conv", "stream": True,
                                       "messages": [{"role": "user", "content": "third"}]})
    assert status == 200
    history = (await asyncio.to_thread(read, owner, "conv")).json()["data"]["messages"]
    # The resent system prompt is not stored twice; each answer follows its question.
    assert [(m["role"], m["content"]) for m in history] == [
        ("system", "Be brief."), ("user", "hello"), ("user", "again"), ("assistant", "tok0 tok1"),
        ("user", "third"), ("assistant", "tok0 tok1 ")]  # the streamed chunks, as the client saw them
    # The outsider's "conv" is its own, empty one: none of the above reaches its request.
    await asyncio.to_thread(BlockFactory, organization=outsider.organization, block_id="up", backend_type="openai",
                            backend_config={"base_url": fake_upstream.base_url("ok-chunks2")})
    status, _ = await chat(outsider.key, {"model": "up", "session_id": "conv",
                                          "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and [m["content"] for m in fake_upstream.stats.last_body["messages"]] == ["hi"]


async def test_a_failed_request_appends_nothing_and_a_bad_session_id_is_a_400(owner, fake_upstream):
    await asyncio.to_thread(BlockFactory, organization=owner.organization, block_id="down", backend_type="openai",
                            backend_config={"base_url": fake_upstream.base_url("status500")})
    status, _ = await chat(owner.key, {"model": "down", "session_id": "kept",
                                       "messages": [{"role": "user", "content": "hi"}]})
    assert status >= 500
    assert not await ChatSession.objects.filter(session_id="kept").aexists()
    status, body = await chat(owner.key, {"model": "down", "session_id": "no spaces",
                                          "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and orjson.loads(body)["error"]["param"] == "session_id"
    status, body = await chat(owner.key, {"model": "down", "session_id": 7,
                                          "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400
