"""Operators and components through the socket: the vector store in the database (cosine similarity),
the calculator, http_request under the egress policy and off until the operator opens it, the
embedding model; and POST /v1/runtime for single calls."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from inference.runtime.calculator import evaluate
from inference.runtime.components import component_type
from inference.runtime.errors import VMFailure
from inference.runtime.models import Component, RuntimeAccess, VectorRecord
from registry.principal import Principal
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


@pytest.mark.parametrize("expression", [
    "(9**4000)**1000", "(2**13000)**(2**13000)", "round(1, -10**6)", "9**4000 * 9**4000",
    "factorial(1000) * factorial(1000)",
])
def test_a_result_too_large_is_refused_before_the_number_is_built(expression):
    # Memory, not time: building (9**4000)**1000 takes 1.6 MB and seconds, 10**(10**6) for round() 0.4 MB;
    # a refusal that comes first allocates next to nothing.
    tracemalloc.start()
    try:
        with pytest.raises(VMFailure) as refused:
            evaluate(expression)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.status == 400 and refused.value.code == "too_large"
    assert peak < 200_000


@pytest.mark.parametrize("expression", [
    "2 ** 13299", "(-2) ** 13299", "10 ** 4000 * 10", "round(10 ** 4000, -4000)", "round(2.567, 2)", "2 ** -2000",
])
def test_whole_numbers_up_to_the_limit_are_still_computed(expression):
    expected = {"2 ** 13299": 2 ** 13299, "(-2) ** 13299": -(2 ** 13299), "10 ** 4000 * 10": 10 ** 4001,
                "round(10 ** 4000, -4000)": 10 ** 4000, "round(2.567, 2)": 2.57, "2 ** -2000": 0}
    assert evaluate(expression) == expected[expression]


async def test_a_calculation_too_large_is_a_clear_422_on_post_v1_runtime(owner):
    status, body = await post(owner.key, {"type": "call_function", "function": "calculator",
                                          "input": {"expression": "round(1, -10**6)"}})
    assert status == 422 and body["error"]["code"] == "too_large" and "round()" in body["error"]["message"]


async def test_split_text_parameters_that_would_multiply_the_text_are_a_422_on_post_v1_runtime(owner):
    status, body = await post(owner.key, {"type": "call_function", "function": "split_text", "input": {
        "text": "x" * 6000, "chunk_size": 1500, "chunk_overlap": 1499, "separators": [""]}})
    assert status == 422 and body["error"]["code"] == "too_many_chunks" and body["error"]["param"] == "chunk_overlap"


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


async def test_http_request_reads_a_body_in_a_charset_that_does_not_exist_as_utf8(owner, fake_upstream):
    await RuntimeAccess.objects.acreate(organization=owner.organization, http_request=True)
    status, body = await post(owner.key, {"type": "call_function", "function": "http_request", "input": {
        "url": fake_upstream.base_url("charsetbogus") + "/chat/completions", "method": "POST", "body": "{}"}})
    assert status == 200, body
    answer = body["packets"][0]
    headers = {name.lower(): value for name, value in answer["headers"].items()}
    assert answer["status_code"] == 200 and headers["content-type"].endswith("charset=bogus")
    assert answer["body"] == '{"text": "café"}'


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


@pytest.fixture
def acme_lm(owner, upstream_block):
    upstream_block(owner.organization, "chunks4", block_id="acme-lm")


async def test_a_nul_character_in_a_components_attributes_is_refused_before_anything_is_written(owner, acme_lm):
    socket = await open_socket(owner.key)
    try:
        stop = await socket.ask("s", type="define_component", component_type="language_model", component_name="lm",
                                attrs={"model": "acme-lm", "stop": ["end\x00"]})
        model = await socket.ask("m", type="define_component", component_type="language_model", component_name="lm",
                                 attrs={"model": "acme\x00lm"})
    finally:
        await socket.close()
    status, body = await post(owner.key, {"type": "define_component", "component_type": "vector_store",
                                          "component_name": "v", "attrs": {"note\x00": 1}})
    assert stop[-1]["body"]["http_status"] == 400 and stop[-1]["body"]["param"] == "attrs.stop[0]"
    assert "NUL" in stop[-1]["body"]["message"]
    assert model[-1]["body"]["http_status"] == 400 and model[-1]["body"]["param"] == "attrs.model"
    assert status == 400 and body["error"]["param"] == "attrs"
    assert not await Component.objects.aexists()


def _insert_many(name: str, vectors: list[list[float]]) -> dict:
    return {"type": "call_method", "component_name": name, "method": "insert_many",
            "input": [{"embedding": vector, "document": f"row {i}"} for i, vector in enumerate(vectors)]}


async def test_retrieve_scans_the_store_in_batches_and_ranks_exactly_as_one_scan_of_every_row(owner, settings):
    settings.RUNTIME_VECTOR_SCAN_ROWS = 7
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(40, 5)).round(3).tolist()
    vectors[30] = vectors[3]  # a tie across batches goes to the older row
    vectors[9] = [0.0] * 5  # no direction: similarity 0
    await post(owner.key, {"type": "define_component", "component_type": "vector_store", "component_name": "v"})
    status, inserted = await post(owner.key, _insert_many("v", vectors))
    assert status == 200
    ids = [int(pk) for pk in inserted["packets"][0]["ids"]]
    query = vectors[3]
    status, body = await post(owner.key, {"type": "call_method", "component_name": "v", "method": "retrieve",
                                          "input": {"query_embedding": query, "top_k": 12}})
    assert status == 200
    # The ranking of one scan of every row at once (float32, ties to the older row).
    matrix, q = np.asarray(vectors, dtype="<f4"), np.asarray(query, dtype="<f4")
    norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(q))
    scores = np.divide(matrix @ q, norms, out=np.zeros(len(vectors), dtype=np.float32), where=norms > 0)
    expected = np.lexsort((np.arange(len(vectors)), -scores))[:12]
    results = body["packets"][0]["results"]
    assert [int(r["id"]) for r in results] == [ids[i] for i in expected]
    assert [r["similarity"] for r in results] == pytest.approx([float(scores[i]) for i in expected], rel=1e-6)
    assert [r["document"] for r in results[:2]] == ["row 3", "row 30"]


async def test_two_first_inserts_at_once_cannot_fix_two_dimensions(owner):
    await post(owner.key, {"type": "define_component", "component_type": "vector_store", "component_name": "v"})
    # Both requests read the component before either inserted: neither sees a dimension.
    first, second = [await Component.objects.aget(name="v") for _ in range(2)]
    store = component_type("vector_store")
    principal = Principal(organization=owner.organization)
    assert [p async for p in store.insert(principal, first, {"embedding": [1, 0], "document": "2-d"})]
    with pytest.raises(VMFailure) as refused:
        _ = [p async for p in store.insert(principal, second, {"embedding": [1, 0, 0], "document": "3-d"})]
    assert refused.value.status == 400 and refused.value.code == "dimension_mismatch"
    assert (await Component.objects.aget(name="v")).attrs == {"dimension": 2}
    assert [r.document async for r in VectorRecord.objects.all()] == ["2-d"]
    status, body = await post(owner.key, {"type": "call_method", "component_name": "v", "method": "retrieve",
                                          "input": {"query_embedding": [1, 1]}})
    assert status == 200 and [r["document"] for r in body["packets"][0]["results"]] == ["2-d"]
