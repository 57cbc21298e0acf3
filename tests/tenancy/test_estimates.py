"""POST /discovery/estimate and /discovery/check_execute, and the Python clients over a live server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inference.models import BlockMetricBucket, Engine
from inference.sdk import AIOSEstimatorClient, OrgLLMsManager, SwitchboardError
from registry.models import Block
from registry.tenancy.admission import DEFAULT_COMPLETION_RESERVE
from registry.tenancy.models import PolicyRule, Quota
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def block(org):
    block = BlockFactory(organization=org, block_id="acme-llm", backend_type="openai",
                         backend_config={"base_url": "http://127.0.0.1:9/v1"})
    now = timezone.now().replace(second=0, microsecond=0)
    BlockMetricBucket.objects.create(block=block, organization=org, minute=now - timedelta(minutes=1), requests=6, errors=1,
                                     latency_ms_sum=180, latency_hist={"10": 3, "50": 3})
    BlockMetricBucket.objects.create(block=block, organization=org, minute=now, requests=4, latency_ms_sum=120,
                                     latency_hist={"10": 2, "50": 1, "200": 1}, ttft_hist={"5": 4})
    # Too old to count.
    BlockMetricBucket.objects.create(block=block, organization=org, minute=now - timedelta(hours=2), requests=100,
                                     latency_ms_sum=10**6, latency_hist={"9000": 100})
    Engine.objects.create(block=block, node="n1", endpoint="http://n1:30000", state=Engine.READY, load=3,
                          capacity=64)
    return block


@pytest.fixture
def secret(other_org):
    return BlockFactory(organization=other_org, block_id="globex-secret")


def test_an_estimate_answers_from_metrics_quota_and_policy(owner, org, block):
    Quota.objects.create(organization=org, token_budget=1000, budget_period="day")
    PolicyRule.objects.create(organization=org, max_output_tokens=100)
    response = owner.client().post("/discovery/estimate", {"search_query": "hello world", "block_id": "acme-llm"},
                                   format="json")
    assert response.status_code == 200
    data = response.json()["data"]
    assert response.json()["success"] is True
    assert data["promptTokens"] == 3 + 4 + 2  # ceil(11/4) + per-message overhead + priming
    assert data["tokenCounting"].startswith("approx")
    assert data["reservedTokens"] == 9 + 100
    assert data["latency"]["requests"] == 10 and data["latency"]["errors"] == 1
    assert data["latency"]["meanMs"] == 30.0
    # Interpolated inside the bucket, as /api/blocks/<id>/metrics does: {10: 5, 50: 4, 200: 1}.
    assert (data["latency"]["p50Ms"], data["latency"]["p95Ms"], data["latency"]["p99Ms"]) == (10, 125, 185)
    assert data["latency"]["ttftP50Ms"] == 2.5
    metrics = owner.client().get("/api/blocks/acme-llm/metrics?window=5m").json()["data"]
    assert (metrics["latencyMs"]["p50"], metrics["latencyMs"]["p95"]) == (10, 125)
    assert (data["queueDepth"], data["engineLoad"], data["engineCapacity"]) == (0, 3, 64)
    assert data["remainingQuota"]["organization"]["token_budget"]["remaining"] == 1000
    assert data["constraints"] == {"pass": True, "violations": []}
    assert data["quotaPass"] is True


def test_the_seeds_input_size_is_estimated_as_that_many_prompt_tokens(owner, org, block):
    PolicyRule.objects.create(organization=org, max_input_tokens=1000)
    response = owner.client().post("/discovery/check_execute", {"search_query": {"input_size": 2048},
                                                                "block_id": "acme-llm"}, format="json")
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["promptTokens"], data["tokenCounting"]) == (2048, "input_size, as given")
    assert data["reservedTokens"] == 2048 + DEFAULT_COMPLETION_RESERVE
    assert data["executable"] is False
    assert data["reasons"] == ["max_input_tokens 1000 exceeded: 2048"]


def test_check_execute_says_no_and_why(owner, org, block):
    PolicyRule.objects.create(organization=org, block=block, max_input_tokens=8, max_output_tokens=50)
    Quota.objects.create(organization=org, token_budget=10)
    response = owner.client().post("/discovery/check_execute", {
        "search_query": [{"role": "user", "content": "a longer question than eight tokens"}],
        "query_params": {"max_tokens": 80}, "block_id": "acme-llm"}, format="json")
    data = response.json()["data"]
    assert data["executable"] is False
    assert data["reasons"][0].startswith("max_input_tokens 8 exceeded: ")
    assert "max_output_tokens 50 exceeded: max_tokens is 80" in data["reasons"]
    assert any(r.startswith("organization token_budget: 10 left") for r in data["reasons"])
    assert {v["rule"] for v in data["constraints"]["violations"]} == {"max_input_tokens", "max_output_tokens"}

    fine = owner.client().post("/discovery/check_execute", {"search_query": "hi", "query_params": {},
                                                            "block_id": "acme-llm"}, format="json")
    assert fine.json()["data"]["executable"] is False  # 50-token reserve is over the 10-token budget
    Quota.objects.update(token_budget=1000)
    fine = owner.client().post("/discovery/check_execute", {"search_query": "hi", "block_id": "acme-llm"},
                               format="json")
    assert fine.json()["data"]["executable"] is True and fine.json()["data"]["reasons"] == []


def test_a_foreign_private_block_is_estimated_like_a_missing_one(owner, secret):
    for path in ("/discovery/estimate", "/discovery/check_execute"):
        foreign = owner.client().post(path, {"search_query": "hi", "block_id": "globex-secret"}, format="json")
        missing = owner.client().post(path, {"search_query": "hi", "block_id": "globex-nothing"}, format="json")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == {"success": False, "message": "unknown block 'globex-secret'"}
        assert missing.json()["message"] == "unknown block 'globex-nothing'"


@pytest.mark.parametrize("body, message", [
    ({"search_query": "hi"}, "block_id: This field is required."),
    ({"block_id": "acme-llm"}, "search_query: This field is required."),
    ({"search_query": "", "block_id": "acme-llm"}, "search_query is empty"),
    ({"search_query": 42, "block_id": "acme-llm"}, "search_query must be a string, a list of messages or an object"),
    ({"search_query": {"nothing": 1}, "block_id": "acme-llm"}, "input_data needs 'messages'"),
    *[({"search_query": {"input_size": size}, "block_id": "acme-llm"},
       "search_query.input_size must be a non-negative integer") for size in (-1, "2048", 1.5, True, None)],
    ({"search_query": "hi", "block_id": "acme-llm", "query_params": {"max_tokens": -3}},
     "query_params.max_tokens must be a positive integer"),
    ({"search_query": "hi", "block_id": "acme-llm", "query_params": "x"}, "query_params: Expected a dictionary"),
])
def test_bad_estimate_requests_get_a_clear_400(owner, block, body, message):
    response = owner.client().post("/discovery/check_execute", body, format="json")
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert response.json()["message"].startswith(message)


@pytest.mark.slow  # loads the built-in model's tokenizer
@pytest.mark.parametrize("config", [{}, {"dispatch": "queued", "queue": "inference.cpu"}],
                         ids=["in-process", "queued"])
def test_the_builtin_block_is_counted_with_its_own_tokenizer(owner, org, config):
    from inference.backends.llamacpp import LlamaCppBackend

    builtin = BlockFactory(organization=org, block_id="smollm2-135m-instruct", backend_type="llamacpp",
                           backend_config=config, visibility=Block.PUBLIC)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    data = owner.client().post("/discovery/estimate", {"search_query": question, "block_id": builtin.block_id},
                               format="json").json()["data"]
    assert data["tokenCounting"] == "llamacpp tokenizer"
    assert data["promptTokens"] == LlamaCppBackend().count_tokens(question)


@pytest.mark.django_db(transaction=True)
def test_the_python_clients_work_against_a_live_server(live_server, owner, outsider, block, secret):
    manager = OrgLLMsManager(live_server.url, owner.key)
    assert manager.org == "acme"
    manager.register_model("summarizer", block_id="acme-llm")
    assert manager.get_model("summarizer")["id"] == "acme-llm"
    assert list(manager.list_models()) == ["summarizer"]
    with pytest.raises(SwitchboardError) as refused:
        manager.register_model("stolen", block_id="globex-secret")
    assert refused.value.status == 404 and "unknown block 'globex-secret'" in refused.value.message
    manager.unregister_model("summarizer")
    assert manager.list_models() == {}
    with pytest.raises(SwitchboardError) as missing:
        manager.get_model("summarizer")
    assert missing.value.status == 404

    nosy = OrgLLMsManager(live_server.url, outsider.key, org="acme")
    with pytest.raises(SwitchboardError) as other:
        nosy.list_models()
    assert other.value.status == 404

    estimator = AIOSEstimatorClient(live_server.url, owner.key)
    estimate = estimator.estimate("hello world", block_id="acme-llm")
    assert estimate["promptTokens"] == 9 and estimate["latency"]["requests"] == 10
    executable, data = estimator.check_execute("hello world", {"max_tokens": 10}, "acme-llm")
    assert executable is True and data["reservedTokens"] == 19
    with pytest.raises(SwitchboardError) as hidden:
        estimator.estimate("hello", block_id="globex-secret")
    assert hidden.value.status == 404
    with pytest.raises(SwitchboardError) as unauthenticated:
        AIOSEstimatorClient(live_server.url, "sb-wrong").estimate("hello", block_id="acme-llm")
    assert unauthenticated.value.status == 401


@pytest.fixture
def broker_queues():
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    names = ["inference.gpu.est-n1", "inference.gpu.est-n2", "inference.est-own"]
    client.delete(*names)
    yield client, names
    client.delete(*names)


def test_queue_depth_counts_the_tasks_waiting_where_a_queued_block_would_send_them(owner, org, broker_queues):
    client, (gpu1, gpu2, own) = broker_queues
    gpu_block = BlockFactory(organization=org, block_id="acme-gpu", backend_type="sglang",
                             backend_config={"dispatch": "queued"})
    for node in ("est-n1", "est-n2"):
        Engine.objects.create(block=gpu_block, node=node, endpoint=f"http://{node}:30000", state=Engine.READY,
                              capacity=8)
    BlockFactory(organization=org, block_id="acme-named", backend_type="openai",
                 backend_config={"base_url": "http://127.0.0.1:9/v1", "dispatch": "queued", "queue": own})
    client.lpush(gpu1, b"x", b"y")
    client.lpush(gpu2, b"z")
    client.lpush(own, b"w")

    def depth(block_id: str) -> int:
        response = owner.client().post("/discovery/estimate", {"search_query": "hi", "block_id": block_id},
                                       format="json")
        assert response.status_code == 200
        return response.json()["data"]["queueDepth"]

    assert depth("acme-gpu") == 3  # both nodes' GPU queues, found from the block's ready engines
    assert depth("acme-named") == 1  # the queue the block names
    direct = BlockFactory(organization=org, block_id="acme-direct", backend_type="openai",
                          backend_config={"base_url": "http://127.0.0.1:9/v1", "queue": own})
    assert depth(direct.block_id) == 0  # not queued: nothing of it waits in a broker
