"""/ws/runtime/: packets with a finish flag, several requests in flight, cancel by id down to the engine,
the organization's components only, and every bad frame answered with a clear error packet."""

from __future__ import annotations

import asyncio

import pytest

from tests.runtime.conftest import open_socket

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": [{"type": "text", "text": "What's your name?"}]}]


@pytest.fixture
def models(owner, upstream_block):
    upstream_block(owner.organization, "chunks4", block_id="acme-lm")
    upstream_block(owner.organization, "delay50-chunks40", block_id="acme-slow")


async def test_echo_answers_one_packet_that_finishes(owner):
    socket = await open_socket(owner.key)
    try:
        packets = await socket.ask("e1", type="call_function", function="echo", input={"text": "Hello world"})
    finally:
        await socket.close()
    assert packets == [{"id": "e1", "status": "ok", "body": {"text": "Hello world"}, "finish": True}]


async def test_the_language_model_streams_deltas_and_ends_with_its_finish_reason(owner, models):
    socket = await open_socket(owner.key)
    try:
        defined = await socket.ask("d", type="define_component", component_type="tvm_language_model",
                                   component_name="lm0", attrs={"model": "acme-lm"})
        packets = await socket.ask("i", type="call_method", component_name="lm0", method="infer",
                                   input={"messages": HI})
    finally:
        await socket.close()
    assert defined == [{"id": "d", "status": "ok", "finish": True}]  # no packet body: define answers nothing
    assert [p["finish"] for p in packets] == [False] * 4 + [True]
    assert "".join(p["body"]["message"]["content"][0]["text"] for p in packets) == "tok0 tok1 tok2 tok3 "
    assert [p["body"]["finish_reason"] for p in packets] == [None] * 4 + ["stop"]
    assert packets[0]["body"]["message"]["role"] == "assistant"


async def test_requests_run_side_by_side_and_a_cancel_reaches_the_engine(owner, models, fake_upstream):
    aborted = fake_upstream.stats.streams_aborted
    socket = await open_socket(owner.key)
    try:
        await socket.ask("d", type="define_component", component_type="language_model", component_name="slow",
                         attrs={"model": "acme-slow"})
        await socket.send({"id": "long", "type": "call_method", "component_name": "slow", "method": "infer",
                           "input": {"messages": HI}})
        first = await socket.receive()
        assert first["id"] == "long" and first["status"] == "ok" and not first["finish"]
        # The echo overtakes the model, which is still generating.
        echoed = await socket.ask("quick", type="call_function", function="echo", input={"n": 1})
        assert echoed[-1]["body"] == {"n": 1}
        await socket.send({"type": "cancel", "id": "long"})
        rest = await socket.packets("long")
    finally:
        await socket.close()
    assert rest[-1] == {"id": "long", "status": "cancelled", "finish": True}
    assert 1 + len([p for p in socket.others if p["id"] == "long"]) + len(rest) < 40
    for _ in range(50):
        if fake_upstream.stats.streams_aborted > aborted:
            break
        await asyncio.sleep(0.05)
    assert fake_upstream.stats.streams_aborted == aborted + 1


async def test_another_organizations_components_do_not_exist_for_the_caller(owner, outsider):
    mine = await open_socket(owner.key)
    theirs = await open_socket(outsider.key)
    try:
        await mine.ask("d", type="define_component", component_type="vector_store", component_name="docs")
        for frame in ({"type": "call_method", "component_name": "docs", "method": "clear"},
                      {"type": "delete_component", "component_name": "docs"}):
            refused = await theirs.ask("x", **frame)
            assert refused == [{"id": "x", "status": "error", "finish": True, "body": {
                "message": "No component named 'docs'.", "code": "component_not_found", "param": "component_name",
                "http_status": 404}}]
        # The name is the outsider's to use in their own organization, and it stays apart from acme's.
        assert (await theirs.ask("d2", type="define_component", component_type="vector_store",
                                 component_name="docs"))[-1]["status"] == "ok"
        assert (await mine.ask("c", type="call_method", component_name="docs", method="clear"))[-1]["status"] == "ok"
    finally:
        await mine.close()
        await theirs.close()


async def test_a_member_may_not_delete_an_owners_component_but_may_delete_their_own(owner, member):
    owners = await open_socket(owner.key)
    members = await open_socket(member.key)
    try:
        await owners.ask("d", type="define_component", component_type="vector_store", component_name="shared")
        refused = await members.ask("x", type="delete_component", component_name="shared")
        assert refused[-1]["status"] == "error" and refused[-1]["body"]["http_status"] == 403
        assert refused[-1]["body"]["code"] == "permission_denied"
        assert (await members.ask("m", type="define_component", component_type="vector_store",
                                  component_name="mine"))[-1]["status"] == "ok"
        assert (await members.ask("y", type="delete_component", component_name="mine"))[-1]["status"] == "ok"
        assert (await owners.ask("z", type="delete_component", component_name="shared"))[-1]["status"] == "ok"
    finally:
        await owners.close()
        await members.close()


async def test_without_a_key_a_request_is_refused_until_an_auth_frame(owner):
    socket = await open_socket()
    try:
        refused = await socket.ask("e", type="call_function", function="echo", input={})
        assert refused[-1]["status"] == "error" and refused[-1]["body"]["http_status"] == 401
        await socket.send({"type": "auth", "api_key": owner.key})
        assert await socket.receive() == {"type": "authenticated", "organization": "acme"}
        assert (await socket.ask("e", type="call_function", function="echo", input={}))[-1]["body"] == {}
    finally:
        await socket.close()


async def test_a_model_the_registry_does_not_have_is_refused_listing_those_available(owner, models):
    socket = await open_socket(owner.key)
    try:
        refused = await socket.ask("d", type="define_component", component_type="tvm_language_model",
                                   component_name="lm0", attrs={"model": "Qwen/Qwen3-0.6B"})
    finally:
        await socket.close()
    body = refused[-1]["body"]
    assert body["http_status"] == 404 and body["param"] == "attrs.model"
    assert "acme-lm" in body["message"] and "acme-slow" in body["message"]


async def test_an_organization_keeps_at_most_its_limit_of_components(owner, settings):
    settings.RUNTIME_MAX_COMPONENTS = 2
    socket = await open_socket(owner.key)
    try:
        for name in ("a", "b"):
            assert (await socket.ask(name, type="define_component", component_type="vector_store",
                                     component_name=name))[-1]["status"] == "ok"
        over = await socket.ask("c", type="define_component", component_type="vector_store", component_name="c")
        again = await socket.ask("a2", type="define_component", component_type="vector_store", component_name="a")
    finally:
        await socket.close()
    assert over[-1]["body"]["http_status"] == 422 and over[-1]["body"]["code"] == "component_limit"
    assert again[-1]["body"]["http_status"] == 409 and again[-1]["body"]["code"] == "already_defined"


@pytest.mark.parametrize(("frame", "code", "param"), [
    ({"id": "b", "type": "launch"}, "unknown_type", "type"),
    ({"id": "b", "type": "call_function", "function": "os.system", "input": {}}, "unknown_operator", "function"),
    ({"id": "b", "type": "call_function", "function": "echo", "input": [1]}, "invalid_type", "input"),
    ({"id": "b", "type": "call_function", "function": "split_text",
      "input": {"text": "x", "chunk_size": 10, "chunk_overlap": 20}}, "invalid_value", "chunk_overlap"),
    ({"id": "b", "type": "call_function", "function": "calculator", "input": {"expression": "__import__('os')"}},
     "unsupported_syntax", "expression"),
    ({"id": "b", "type": "define_component", "component_type": "inference.runtime.vm", "component_name": "x"},
     "unknown_component_type", "component_type"),
    ({"id": "b", "type": "define_component", "component_type": "vector_store", "component_name": "../x"},
     "invalid_value", "component_name"),
    ({"id": "b", "type": "define_component", "component_type": "vector_store", "component_name": "x",
      "attrs": {"dimension": 0}}, "invalid_value", "attrs.dimension"),
    ({"id": "b", "type": "call_method", "component_name": "nothing", "method": "infer"}, "component_not_found",
     "component_name"),
])
async def test_bad_requests_get_an_error_packet_naming_what_is_wrong(owner, frame, code, param):
    socket = await open_socket(owner.key)
    try:
        await socket.send(frame)
        packets = await socket.packets("b")
    finally:
        await socket.close()
    assert packets[-1]["status"] == "error" and packets[-1]["finish"] is True
    assert (packets[-1]["body"]["code"], packets[-1]["body"]["param"]) == (code, param)
    assert packets[-1]["body"]["http_status"] in (400, 404)


async def test_frames_that_are_not_requests_get_error_packets(owner):
    socket = await open_socket(owner.key)
    try:
        await socket.send("not json")
        assert (await socket.receive())["body"]["code"] == "invalid_json"
        await socket.send({"type": "call_function", "function": "echo"})
        assert (await socket.receive())["body"]["code"] == "missing_required_parameter"
        await socket.send({"type": "cancel", "id": "nothing"})
        assert (await socket.receive())["body"]["code"] == "unknown_id"
    finally:
        await socket.close()
