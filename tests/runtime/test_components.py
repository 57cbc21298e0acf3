"""Operators and components through the socket: the vector store in the database (cosine similarity),
the calculator, http_request under the egress policy and off until the operator opens it, the
embedding model; and POST /v1/runtime for single calls."""

from __future__ import annotations

import math

import pytest

from inference.runtime.calculator import evaluate
from inference.runtime.errors import VMFailure
from inference.runtime.models import Component, RuntimeAccess, VectorRecord
from tests.runtime.conftest import open_socket, post

pytestmark = pytest.mark.django_db(transaction=True)


def _ok(packets: list[dict]) -> object:
    assert packets[-1]["status"] == "ok", packets
    return packets[-1].get("body")


async def test_the_vector_store_keeps_rows_in_the_database_and_ranks_them_by_cosine_similarity(owner):
    socket = await open_socket(owner.key)
    try:
        _ok(await socket.ask("d", type="define_component", component_type="faiss_vector_store",
                             component_name="vs", attrs={"dimension": 3}))
        first = _ok(await socket.ask("i", type="call_method", component_name="vs", method="insert",
                                     input={"embedding": [1, 0, 0], "document": "east", "metadata": {"n": 1}}))
        many = _ok(await socket.ask("m", type="call_method", component_name="vs", method="insert_many",
                                    input=[{"embedding": [0, 1, 0], "document": "north"},
                                           {"embedding": [0.9, 0.1, 0], "document": "east by north"}]))
        found = _ok(await socket.ask("r", type="call_method", component_name="vs", method="retrieve",
                                     input={"query_embedding": [2, 0, 0], "top_k": 2}))
        row = _ok(await socket.ask("g", type="call_method", component_name="vs", method="get_by_id",
                                   input={"id": first["id"]}))
        _ok(await socket.ask("x", type="call_method", component_name="vs", method="remove", input={"id": first["id"]}))
        gone = await socket.ask("g2", type="call_method", component_name="vs", method="get_by_id",
                                input={"id": first["id"]})
        wrong = await socket.ask("w", type="call_method", component_name="vs", method="insert",
                                 input={"embedding": [1, 2], "document": "2-d"})
        nul = await socket.ask("n", type="call_method", component_name="vs", method="insert",
                               input={"embedding": [1, 2, 3], "document": "a\x00b"})
        cleared = _ok(await socket.ask("c", type="call_method", component_name="vs", method="clear"))
        unknown = await socket.ask("u", type="call_method", component_name="vs", method="infer")
    finally:
        await socket.close()
    assert len(many["ids"]) == 2
    assert [r["document"] for r in found["results"]] == ["east", "east by north"]
    assert found["results"][0]["similarity"] == pytest.approx(1.0)
    assert found["results"][1]["similarity"] == pytest.approx(0.9 / math.hypot(0.9, 0.1), rel=1e-6)
    assert found["results"][0]["metadata"] == {"n": 1}
    assert row == {"id": first["id"], "document": "east", "metadata": {"n": 1}, "embedding": [1.0, 0.0, 0.0]}
    assert gone[-1]["body"]["http_status"] == 404
    assert wrong[-1]["body"]["code"] == "dimension_mismatch" and wrong[-1]["body"]["http_status"] == 400
    assert nul[-1]["body"]["http_status"] == 400
    assert cleared == {"removed": 2}
    assert unknown[-1]["body"]["code"] == "unknown_method" and "retrieve" in unknown[-1]["body"]["message"]
    assert await VectorRecord.objects.acount() == 0 and await Component.objects.filter(name="vs").aexists()


async def test_a_vector_store_is_the_same_store_on_every_connection(owner):
    first = await open_socket(owner.key)
    try:
        _ok(await first.ask("d", type="define_component", component_type="vector_store", component_name="kb"))
        _ok(await first.ask("i", type="call_method", component_name="kb", method="insert",
                            input={"embedding": [0.5, 0.5], "document": "kept"}))
    finally:
        await first.close()
    second = await open_socket(owner.key)
    try:
        found = _ok(await second.ask("r", type="call_method", component_name="kb", method="retrieve",
                                     input={"query_embedding": [1, 1], "top_k": 5}))
    finally:
        await second.close()
    assert [r["document"] for r in found["results"]] == ["kept"]


@pytest.mark.parametrize(("expression", "value"), [
    ("1 + 2 * 3", 7), ("2^10", 1024), ("(1 + 2) / 4", 0.75), ("sqrt(16) + abs(-2)", 6), ("-3 // 2", -2),
    ("sin(pi / 2)", 1), ("log(e)", 1), ("max(1, 5, 3) % 4", 1), ("factorial(5)", 120), ("2 ** 0.5", math.sqrt(2)),
])
def test_the_calculator_evaluates_arithmetic_and_math_functions(expression, value):
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(("expression", "code"), [
    ("__import__('os').system('id')", "unsupported_syntax"), ("open", "unknown_name"), ("(1).real", "unsupported_syntax"),
    ("1 +", "syntax_error"), ("1 / 0", "math_error"), ("sqrt(-1)", "math_error"), ("10 ** 100000", "too_large"),
    ("factorial(100000)", "invalid_value"), ("[x for x in range(9)]", "unsupported_syntax"), ("'a' * 3", "unsupported_syntax"),
])
def test_the_calculator_refuses_anything_but_arithmetic_with_a_clear_reason(expression, code):
    with pytest.raises(VMFailure) as refused:
        evaluate(expression)
    assert refused.value.status == 400 and refused.value.code == code


async def test_http_request_is_off_until_the_operator_opens_it_for_the_organization(owner, fake_upstream):
    url = fake_upstream.base_url("chunks2") + "/chat/completions"
    request = {"type": "call_function", "function": "http_request",
               "input": {"url": url, "method": "POST", "headers": {"Content-Type": "application/json"},
                         "body": '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'}}
    socket = await open_socket(owner.key)
    try:
        off = await socket.ask("a", **request)
        await RuntimeAccess.objects.acreate(organization=owner.organization, http_request=True)
        answered = _ok(await socket.ask("b", **request))
        internal = await socket.ask("c", type="call_function", function="http_request",
                                    input={"url": "http://127.0.0.2:9/", "method": "GET"})
        host_header = await socket.ask("d", type="call_function", function="http_request",
                                       input={"url": url, "headers": {"Host": "internal"}})
    finally:
        await socket.close()
    assert off[-1]["body"]["http_status"] == 403 and off[-1]["body"]["code"] == "operator_disabled"
    assert answered["status_code"] == 200 and "tok0" in answered["body"]
    assert internal[-1]["body"]["code"] == "egress_denied" and internal[-1]["body"]["http_status"] == 502
    assert host_header[-1]["body"]["http_status"] == 400 and host_header[-1]["body"]["param"] == "headers"


async def test_http_request_stays_off_everywhere_when_the_setting_is_off(owner, settings, fake_upstream):
    settings.RUNTIME_HTTP_REQUEST = False
    await RuntimeAccess.objects.acreate(organization=owner.organization, http_request=True)
    status, body = await post(owner.key, {"type": "call_function", "function": "http_request",
                                          "input": {"url": fake_upstream.base_url("ok")}})
    assert status == 403 and body["error"]["code"] == "operator_disabled"


async def test_post_v1_runtime_answers_one_request_with_its_packets(owner):
    status, body = await post(owner.key, {"type": "call_function", "function": "split_text",
                                          "input": {"text": "a b c d", "chunk_size": 3, "chunk_overlap": 0}})
    assert status == 200 and body == {"packets": [{"chunks": ["a b", " c", " d"]}]}
    status, body = await post(owner.key, {"type": "define_component", "component_type": "vector_store",
                                          "component_name": "v"})
    assert status == 200 and body == {"packets": []}


async def test_post_v1_runtime_refuses_in_the_openai_error_shape(owner, member, outsider):
    await post(owner.key, {"type": "define_component", "component_type": "vector_store", "component_name": "v"})
    assert (await post(None, {"type": "call_function", "function": "echo"}))[0] == 401
    status, body = await post(outsider.key, {"type": "delete_component", "component_name": "v"})
    assert status == 404 and body["error"]["code"] == "component_not_found"
    status, body = await post(member.key, {"type": "delete_component", "component_name": "v"})
    assert status == 403 and body["error"]["code"] == "permission_denied"
    status, body = await post(owner.key, b"{nope")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = await post(owner.key, {"type": "call_function", "function": "calculator", "input": {}})
    assert status == 400 and body["error"]["param"] == "expression"
    # Well-formed by the schema, refused by a rule it cannot state: 422, like /api.
    status, body = await post(owner.key, {"type": "call_function", "function": "split_text",
                                          "input": {"text": "x", "chunk_size": 5, "chunk_overlap": 6}})
    assert status == 422 and body["error"]["param"] == "chunk_overlap"
    status, body = await post(owner.key, {"type": "call_method", "component_name": "v", "method": "insert",
                                          "input": {"document": "no embedding"}})
    assert status == 422 and body["error"]["param"] == "embedding"


@pytest.mark.slow  # loads the sentence embedding model (PyTorch): seconds
async def test_the_embedding_model_embeds_a_prompt_with_the_servers_model(owner):
    socket = await open_socket(owner.key)
    try:
        _ok(await socket.ask("d", type="define_component", component_type="embedding_model", component_name="em"))
        # The first call loads PyTorch and the model: seconds, more on a busy machine.
        first = _ok(await socket.ask("a", wait_s=180, type="call_method", component_name="em", method="infer",
                                     input={"prompt": "a cat sits on the mat"}))
        unknown = await socket.ask("u", type="define_component", component_type="embedding_model",
                                   component_name="em2", attrs={"model": "BAAI/bge-m3"})
    finally:
        await socket.close()
    assert len(first["embedding"]) == 384
    assert math.fsum(x * x for x in first["embedding"]) == pytest.approx(1.0, rel=1e-4)
    assert unknown[-1]["body"]["http_status"] == 404 and "all-MiniLM-L6-v2" in unknown[-1]["body"]["message"]
