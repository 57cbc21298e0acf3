"""Estimates and feasibility (the seed's `estimate` / `check_execute`), from real data.

- Prompt tokens: the block's own tokenizer when its backend offers `count_tokens(messages)`
  (the built-in llama.cpp model does); otherwise an approximation, said so in the answer:
  ceil(characters / 4) per message plus 4 tokens of chat-template overhead per message and
  2 for the reply's priming (close to BPE tokenizers on English text). The seed's query
  `{"input_size": N}` asks about a prompt of N tokens, so N is taken as given.
- Latency: percentiles over the last LATENCY_WINDOW_MIN minutes of BlockMetricBucket.
- Queue depth: the length of the block's Celery queue in Redis (backend_config["queue"]),
  0 when the block is served in-process or there is no Redis; plus its engines' load.
- Remaining quota: the caller's key and organization counters, read from the quota store.
- Constraints: the same checker `admit` runs, on the same effective policy; the key's
  allowed_models by the gateway's access check (registry.tenancy.access.key_refusal).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone
from kombu.exceptions import ChannelError

from inference.backends.factory import own_backend_for_block
from inference.backends.messages import messages_from_input
from inference.backends.queued.queues import queued_request_queue
from inference.metrics import merge_histograms, percentile
from inference.models import BlockMetricBucket, Engine
from registry.selectors import block_reference
from registry.tenancy.access import key_refusal
from registry.tenancy.admission import DEFAULT_COMPLETION_RESERVE
from registry.tenancy.constraints import check_constraints, effective_policy, request_protocols
from registry.tenancy.rules import load_org_rules
from registry.tenancy.selectors import remaining_quota

log = logging.getLogger(__name__)

LATENCY_WINDOW_MIN = 15
APPROXIMATION = "approx: ceil(chars/4) + 4 per message + 2"
GIVEN_INPUT_SIZE = "input_size, as given"


def messages_from_query(search_query: Any) -> list[dict[str, Any]]:
    """A string is one user message; a list is messages; a dict is the seed's input_data."""
    if isinstance(search_query, str):
        if not search_query:
            raise ValueError("search_query is empty")
        return [{"role": "user", "content": search_query}]
    if isinstance(search_query, list):
        if not search_query or not all(isinstance(m, dict) for m in search_query):
            raise ValueError("search_query as a list must hold message objects")
        return search_query
    if isinstance(search_query, dict):
        messages = messages_from_input(search_query)
        if not all(isinstance(m, dict) for m in messages):
            raise ValueError("search_query's messages or prompts must be message objects")
        return messages
    raise ValueError("search_query must be a string, a list of messages or an object")


def input_size_of(search_query: Any) -> int | None:
    """The seed's {"input_size": N}, when the query gives one: N prompt tokens to estimate for."""
    if not isinstance(search_query, dict) or "input_size" not in search_query:
        return None
    size = search_query["input_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError("search_query.input_size must be a non-negative integer (a number of prompt tokens)")
    return size


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def approximate_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(math.ceil(len(_text_of(m.get("content"))) / 4) + 4 for m in messages) + 2


def count_prompt_tokens(block, messages: list[dict[str, Any]]) -> tuple[int, str]:
    """(tokens, how they were counted)."""
    try:
        # A queued block is counted with the backend its worker runs, not the queue in front of it.
        backend = own_backend_for_block(block)
        counter = getattr(backend, "count_tokens", None)
        if counter is not None:
            return int(counter(messages)), f"{block.backend_type} tokenizer"
    except Exception:  # a backend that cannot load must not break an estimate
        log.debug("no tokenizer for %s; approximating", block.block_id, exc_info=True)
    return approximate_tokens(messages), APPROXIMATION


def latency_summary(block, *, organization) -> dict[str, Any]:
    """Recent latency, from the per-minute metric buckets: of every caller for the block's owner,
    of `organization`'s own requests for anyone else (a shared block's traffic is its owner's to see)."""
    since = timezone.now() - timedelta(minutes=LATENCY_WINDOW_MIN)
    buckets = BlockMetricBucket.objects.filter(block=block, minute__gte=since)
    if block.organization_id != organization.pk:
        buckets = buckets.filter(organization=organization)
    totals = buckets.aggregate(requests=Sum("requests"), errors=Sum("errors"), latency=Sum("latency_ms_sum"))
    # The same histograms and percentile as GET /api/blocks/<id>/metrics, over this window.
    latency_hist: dict[str, int] = {}
    ttft_hist: dict[str, int] = {}
    for latency, ttft in buckets.values_list("latency_hist", "ttft_hist"):
        merge_histograms(latency_hist, latency)
        merge_histograms(ttft_hist, ttft)
    requests = totals["requests"] or 0
    return {
        "windowMinutes": LATENCY_WINDOW_MIN,
        "requests": requests,
        "errors": totals["errors"] or 0,
        "meanMs": round(totals["latency"] / requests, 2) if requests and totals["latency"] is not None else None,
        "p50Ms": percentile(latency_hist, 50),
        "p95Ms": percentile(latency_hist, 95),
        "p99Ms": percentile(latency_hist, 99),
        "ttftP50Ms": percentile(ttft_hist, 50),
    }


def _queues_of(block) -> list[str]:
    """The Celery queues a queued block's requests wait in, chosen as QueuedBackend chooses."""
    config = block.backend_config or {}
    if config.get("dispatch") != "queued":
        return []  # served in-process: nothing waits in a broker
    configured = config.get("queue")
    if configured or block.backend_type != "sglang":
        return [queued_request_queue(configured=configured, backend_type=block.backend_type, engine_node=None)]
    # Any ready engine's node may get the next request: count every one of their queues.
    nodes = Engine.objects.filter(block=block, state=Engine.READY).values_list("node", flat=True).distinct()
    return sorted(queued_request_queue(configured=None, backend_type=block.backend_type, engine_node=node)
                  for node in nodes)


def _waiting_tasks(queues: list[str]) -> int:
    """Messages waiting in the broker's queues; a passive declare works on Redis and RabbitMQ alike."""
    if not queues or settings.CELERY_BROKER_URL.startswith("memory://"):
        return 0
    depth = 0
    try:
        with current_app.connection_for_read() as connection:
            for queue in queues:
                try:
                    depth += connection.default_channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:
                    pass  # no such queue yet: nothing waits in it
    except Exception:
        log.warning("could not read the length of queues %s", queues, exc_info=True)
    return depth


def queue_summary(block) -> dict[str, Any]:
    engines = Engine.objects.filter(block=block, state=Engine.READY).aggregate(load=Sum("load"),
                                                                                capacity=Sum("capacity"))
    return {"queueDepth": _waiting_tasks(_queues_of(block)), "engineLoad": engines["load"] or 0.0,
            "engineCapacity": engines["capacity"] or 0}


@dataclass
class EstimateRequest:
    """The request an estimate is about, as admission reads one (registry.tenancy.policy.AdmissionRequest)."""

    messages: list[dict[str, Any]]
    max_tokens: int | None
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def estimate(*, principal, block, search_query: Any, query_params: dict[str, Any] | None = None) -> dict[str, Any]:
    query_params = dict(query_params or {})
    input_size = input_size_of(search_query)
    if input_size is None:
        messages = messages_from_query(search_query)
        prompt_tokens, method = count_prompt_tokens(block, messages)
    else:
        messages, prompt_tokens, method = [], input_size, GIVEN_INPUT_SIZE
    rules = load_org_rules(principal.organization.pk)
    policy = effective_policy(org_rule=rules.org_rule, block_rule=rules.block_rules.get(block.pk, {}),
                              request_values={})
    for key in ("max_tokens", "max_completion_tokens"):
        value = query_params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"query_params.{key} must be a positive integer")
    max_tokens = query_params.get("max_tokens") or query_params.get("max_completion_tokens")
    request = EstimateRequest(messages=messages, max_tokens=max_tokens)
    problems = check_constraints(policy=policy, request=request, prompt_tokens=prompt_tokens,
                                 protocols=request_protocols(request, None))
    reference = block_reference(block, organization=principal.organization)
    # The view found the block under the naming rule; the key's side is the gateway's own check.
    refusal = key_refusal(principal, block, reference)
    if refusal is not None:
        problems.append(refusal)
    needed = prompt_tokens + (max_tokens or policy.max_output_tokens or DEFAULT_COMPLETION_RESERVE)
    quota = remaining_quota(principal)
    quota_problems = [
        f"{scope} {rule}: {state['remaining']} left, this request needs "
        f"{1 if rule == 'requests_per_minute' else needed}"
        for scope, rules_left in quota.items() for rule, state in rules_left.items()
        if state["remaining"] < (1 if rule == "requests_per_minute" else needed)
    ]
    return {
        "blockId": reference,
        "promptTokens": prompt_tokens,
        "tokenCounting": method,
        "maxOutputTokens": max_tokens or policy.max_output_tokens,
        "reservedTokens": needed,
        "latency": latency_summary(block, organization=principal.organization),
        **queue_summary(block),
        "remainingQuota": quota,
        "constraints": {
            "pass": not problems,
            "violations": [{"rule": p.rule, "message": p.message} for p in problems],
        },
        "quotaPass": not quota_problems,
        "quotaProblems": quota_problems,
        "policy": {
            "timeout_s": policy.timeout_s, "retries": policy.retries, "fallbacks": [b for b in policy.fallbacks if b in rules.usable_fallbacks],
            "max_input_tokens": policy.max_input_tokens, "max_output_tokens": policy.max_output_tokens,
            "allowed_protocols": list(policy.allowed_protocols),
        },
    }


def check_execute(*, principal, block, search_query: Any, query_params: dict[str, Any] | None) -> dict[str, Any]:
    data = estimate(principal=principal, block=block, search_query=search_query, query_params=query_params)
    reasons = [v["message"] for v in data["constraints"]["violations"]] + data["quotaProblems"]
    if not block.enabled:
        reasons.insert(0, f"block {block.block_id} is disabled")
    return {"executable": not reasons, "reasons": reasons, **data}
