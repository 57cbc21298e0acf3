"""GET /metrics: Prometheus' text format for the operator, behind a token or an allowed network,
counting exactly what the dashboard and the API count."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from inference import metrics
from tests.factories import BlockFactory


@pytest.fixture
def traffic(owner, outsider):
    block = BlockFactory(organization=owner.organization, block_id="acme-scraped")
    for org, ok in [(owner.organization, True), (owner.organization, False), (outsider.organization, True)]:
        metrics.record(block_pk=block.pk, organization_pk=org.pk, ok=ok, latency_ms=25, ttft_ms=5,
                       tokens_in=3, tokens_out=8)
    metrics.flush_now()
    return block


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    assert match, f"{name}{{{wanted}}} not in\n{text}"
    return float(match.group(1))


def test_it_does_not_exist_until_the_operator_configures_it(settings, traffic):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = "", []
    assert Client().get("/metrics").status_code == 404


def test_a_missing_or_wrong_token_is_401(settings, traffic):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = "s3cret-token", []
    assert Client().get("/metrics").status_code == 401
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")


def test_a_tenants_api_key_is_not_the_metrics_token(settings, owner, traffic):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = "s3cret-token", []
    assert owner.client().get("/metrics").status_code == 401


def test_the_token_reads_every_organizations_counters(settings, owner, traffic):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = "s3cret-token", []
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert sample(text, "switchboard_requests_total", block="acme/acme-scraped", organization="acme") == 2
    assert sample(text, "switchboard_request_errors_total", block="acme/acme-scraped", organization="acme") == 1
    assert sample(text, "switchboard_requests_total", block="acme/acme-scraped", organization="globex") == 1
    assert sample(text, "switchboard_tokens_out_total", block="acme/acme-scraped", organization="globex") == 8
    assert 0 < sample(text, "switchboard_request_latency_seconds", block="acme/acme-scraped", quantile="0.5") <= 0.03
    assert "# TYPE switchboard_requests_total counter" in text


def test_the_counters_agree_with_the_blocks_api(settings, owner, traffic):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = "s3cret-token", []
    text = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").content.decode()
    api = owner.client().get("/api/blocks/acme-scraped/metrics?window=1h").json()["data"]
    scraped = sum(sample(text, "switchboard_requests_total", block="acme/acme-scraped", organization=org)
                  for org in ("acme", "globex"))
    assert scraped == api["requests"] == 3


def test_an_allowed_network_reads_it_without_a_token_and_others_get_404(settings, traffic):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = "", ["10.1.0.0/16"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 404


def test_with_both_set_an_outside_address_without_the_token_is_401(settings, traffic):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = "s3cret-token", ["10.1.0.0/16"]
    assert Client(REMOTE_ADDR="192.0.2.1").get("/metrics").status_code == 401
    assert Client(REMOTE_ADDR="10.1.0.9").get("/metrics").status_code == 200


def test_only_get_is_answered(settings, traffic):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW_NETWORKS = "s3cret-token", []
    assert Client().post("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 405
