"""Policies, quotas and usage through the REST API."""

from __future__ import annotations

import pytest

from registry.models import ApiKey, Block
from registry.tenancy.models import PolicyRule, Quota
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def blocks(org, other_org):
    return (BlockFactory(organization=org, block_id="acme-llm"),
            BlockFactory(organization=org, block_id="acme-spare"),
            BlockFactory(organization=other_org, block_id="globex-secret"),
            BlockFactory(organization=other_org, block_id="globex-public", visibility=Block.PUBLIC))


def test_an_owner_writes_reads_edits_and_deletes_a_policy(owner, member, blocks):
    client = owner.client()
    created = client.post("/api/policies", {
        "block": "acme-llm", "timeout_s": 5, "retries": 2, "backoff_s": 0.1, "retry_on": [503, 500, 500],
        "fallbacks": ["acme-spare", "globex/globex-public"], "max_input_tokens": 1000, "max_output_tokens": 200,
        "allowed_protocols": ["text/plain", "IMAGE/*"],
    }, format="json")
    assert created.status_code == 201, created.json()
    data = created.json()["data"]
    assert data["block"] == "acme-llm" and data["retry_on"] == [500, 503]
    assert data["allowed_protocols"] == ["text/plain", "image/*"]
    assert member.client().get(f"/api/policies/{data['id']}").json()["data"]["retries"] == 2

    edited = client.patch(f"/api/policies/{data['id']}", {"retries": 4, "timeout_s": None}, format="json")
    assert edited.status_code == 200
    rule = PolicyRule.objects.get()
    assert (rule.retries, rule.timeout_s, rule.max_input_tokens) == (4, None, 1000)

    assert member.client().patch(f"/api/policies/{data['id']}", {"retries": 1}, format="json").status_code == 403
    assert client.post("/api/policies", {"block": "acme-llm"}, format="json").status_code == 409
    assert client.delete(f"/api/policies/{data['id']}").status_code == 200
    assert not PolicyRule.objects.exists()


@pytest.mark.parametrize("body, message", [
    ({"timeout_s": 0}, "timeout_s: Ensure this value is greater than or equal to 0.1."),
    ({"timeout_s": "soon"}, "timeout_s: A valid number is required."),
    ({"retries": 11}, "retries: Ensure this value is less than or equal to 10."),
    ({"retries": -1}, "retries: Ensure this value is greater than or equal to 0."),
    ({"backoff_s": 61}, "backoff_s: Ensure this value is less than or equal to 60."),
    ({"retry_on": [200]}, "retry_on: Ensure this value is greater than or equal to 400."),
    ({"max_input_tokens": 0}, "max_input_tokens: Ensure this value is greater than or equal to 1."),
    ({"max_output_tokens": 10**9}, "max_output_tokens: Ensure this value is less than or equal to 10000000."),
    ({"allowed_protocols": ["text"]}, "allowed_protocols: must look like 'type/subtype'"),
    ({"allowed_protocols": "text/plain"}, "allowed_protocols: Expected a list"),
])
def test_bad_policies_get_a_clear_400_and_nothing_is_saved(owner, blocks, body, message):
    response = owner.client().post("/api/policies", body, format="json")
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert not PolicyRule.objects.exists()


@pytest.mark.parametrize("body, status, message", [
    # Well formed, but naming a block that does not exist or is not visible: 404, the same words for both.
    ({"fallbacks": ["globex-secret"]}, 404, "fallbacks: unknown block 'globex-secret'"),
    ({"fallbacks": ["nope"]}, 404, "fallbacks: unknown block 'nope'"),
    ({"block": "globex-secret"}, 404, "block: unknown block 'globex-secret'"),
    # Well formed, refused by a rule the schema cannot state: 422.
    ({"block": "acme-llm", "fallbacks": ["acme-llm"]}, 422, "fallbacks: a block cannot fall back to itself"),
])
def test_a_policy_naming_a_missing_block_is_404_and_one_falling_back_to_itself_is_422(owner, blocks, body, status,
                                                                                     message):
    response = owner.client().post("/api/policies", body, format="json")
    assert response.status_code == status
    assert response.json() == {"success": False, "message": message, "errors": response.json()["errors"]}
    assert not PolicyRule.objects.exists()


@pytest.mark.parametrize("body", [{"retries": "3"}, {"timeout_s": "1.5"}, {"block": 7}, {"retry_on": ["500"]}])
def test_a_policy_field_of_the_wrong_json_type_is_a_400_not_coerced(owner, blocks, body):
    response = owner.client().post("/api/policies", body, format="json")
    assert response.status_code == 400 and response.json()["success"] is False
    assert not PolicyRule.objects.exists()


def test_another_organizations_policies_and_quotas_are_404(owner, outsider, blocks):
    rule = PolicyRule.objects.create(organization=owner.organization, retries=1)
    quota = Quota.objects.create(organization=owner.organization, requests_per_minute=5)
    for path in (f"/api/policies/{rule.pk}", f"/api/quotas/{quota.pk}"):
        for response in (outsider.client().get(path), outsider.client().patch(path, {}, format="json"),
                         outsider.client().delete(path)):
            assert response.status_code == 404
            assert response.json() == {"success": False, "message": "Not found."}
    assert outsider.client().get("/api/policies").json()["data"] == []
    assert outsider.client().get("/api/quotas").json()["data"] == []
    assert PolicyRule.objects.count() == Quota.objects.count() == 1


def test_an_owner_sets_quotas_for_the_organization_and_for_a_key(owner, member):
    client = owner.client()
    org_quota = client.post("/api/quotas", {"requests_per_minute": 60, "token_budget": 100000,
                                            "budget_period": "day"}, format="json")
    assert org_quota.status_code == 201
    key_id = ApiKey.objects.get(name="bob-key").pk
    key_quota = client.post("/api/quotas", {"api_key": key_id, "tokens_per_minute": 1000}, format="json")
    assert key_quota.status_code == 201 and key_quota.json()["data"]["apiKey"] == key_id
    assert client.post("/api/quotas", {"requests_per_minute": 1}, format="json").status_code == 409
    patched = client.patch(f"/api/quotas/{org_quota.json()['data']['id']}", {"requests_per_minute": 120},
                           format="json")
    assert patched.json()["data"]["requestsPerMinute"] == 120
    assert member.client().post("/api/quotas", {"token_budget": 1}, format="json").status_code == 403

    usage = member.client().get("/api/usage").json()["data"]
    assert usage["organization"]["requests_per_minute"] == {"limit": 120, "used": 0, "remaining": 120,
                                                             "resetsInS": usage["organization"][
                                                                 "requests_per_minute"]["resetsInS"]}
    assert usage["apiKey"]["tokens_per_minute"]["limit"] == 1000


@pytest.mark.parametrize("body, message", [
    ({"requests_per_minute": -1}, "requests_per_minute: Ensure this value is greater than or equal to 0."),
    ({"budget_period": "year"}, 'budget_period: "year" is not a valid choice.'),
    ({"token_budget": "lots"}, "token_budget: A valid integer is required."),
    ({"token_budget": "1000"}, "token_budget: A valid integer is required."),
])
def test_bad_quotas_get_a_clear_400(owner, body, message):
    response = owner.client().post("/api/quotas", body, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == message
    assert not Quota.objects.exists()


def test_a_quota_naming_a_missing_key_is_404(owner):
    response = owner.client().post("/api/quotas", {"api_key": 999999}, format="json")
    assert response.status_code == 404
    assert response.json()["message"] == "api_key: unknown API key 999999"
    assert not Quota.objects.exists()


def test_a_quota_cannot_name_another_organizations_key(owner, outsider):
    theirs = ApiKey.objects.get(name="mallory-key").pk
    response = owner.client().post("/api/quotas", {"api_key": theirs, "requests_per_minute": 1}, format="json")
    assert response.status_code == 404
    assert response.json()["message"] == f"api_key: unknown API key {theirs}"
