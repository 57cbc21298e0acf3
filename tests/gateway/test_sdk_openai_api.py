"""The SDK's OpenAIInferenceAPI against a live gateway: the key's organization decides what it may run."""

from __future__ import annotations

import pytest

from inference.sdk import OpenAIInferenceAPI, RegistryError

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_member_runs_the_organizations_model_through_v1(live_gateway, member, upstream_block):
    upstream_block(member.organization, "chunks3", block_id="acme-chat")
    chat = OpenAIInferenceAPI(api_key=member.key, model="acme-chat", base_url=live_gateway.url)
    assert chat.run_inference({"prompts": [{"role": "user", "content": "hi"}]}) == "tok0 tok1 tok2"
    ready, model = chat.check_execute({"input_size": 10})
    assert (ready, model["id"], model["owned_by"]) == (True, "acme-chat", "acme")
    ok, estimates = chat.get_current_estimates()
    assert (ok, estimates["blockId"], estimates["promptTokens"]) == (True, "acme-chat", 0)


def test_a_base_url_ending_in_v1_is_used_as_it_is(live_gateway, owner, upstream_block):
    upstream_block(owner.organization, "chunks2", block_id="acme-chat")
    chat = OpenAIInferenceAPI(api_key=owner.key, model="acme-chat", base_url=f"{live_gateway.url}/v1", max_tokens=5)
    assert chat.run_inference({"text": "hi"}) == "tok0 tok1"
    assert chat.get_current_estimates()[0] is True


def test_the_url_and_key_default_to_the_environment(live_gateway, owner, upstream_block, monkeypatch):
    upstream_block(owner.organization, "chunks1", block_id="acme-chat")
    monkeypatch.setenv("SWITCHBOARD_URL", live_gateway.url)
    monkeypatch.setenv("SWITCHBOARD_API_KEY", owner.key)
    assert OpenAIInferenceAPI(model="acme-chat").run_inference({"text": "hi"}) == "tok0"


def test_another_organizations_private_model_is_not_there_for_the_outsider(live_gateway, owner, outsider,
                                                                          upstream_block):
    upstream_block(owner.organization, "ok", block_id="acme-private")
    chat = OpenAIInferenceAPI(api_key=outsider.key, model="acme-private", base_url=live_gateway.url)
    with pytest.raises(RegistryError) as refused:
        chat.run_inference({"text": "hi"})
    assert refused.value.status == 404
    assert "The model 'acme-private' does not exist" in refused.value.message
    ready, why = chat.check_execute({})
    assert (ready, why["status"]) == (False, 404)
    assert chat.get_current_estimates()[0] is False


def test_a_wrong_key_and_an_unreachable_server_are_clear_errors(live_gateway):
    with pytest.raises(RegistryError) as wrong:
        OpenAIInferenceAPI(api_key="sb-not-a-key", model="m", base_url=live_gateway.url).run_inference({"text": "x"})
    assert (wrong.value.status, "Incorrect API key provided" in wrong.value.message) == (401, True)
    with pytest.raises(RegistryError) as unreachable:
        OpenAIInferenceAPI(api_key="k", model="m", base_url="http://127.0.0.1:9").run_inference({"text": "x"})
    assert unreachable.value.status is None
    assert "cannot reach http://127.0.0.1:9/v1/chat/completions" in unreachable.value.message


def test_it_needs_a_model_and_known_sampling_fields():
    with pytest.raises(ValueError, match="needs model="):
        OpenAIInferenceAPI(api_key="k")
    with pytest.raises(TypeError, match="unknown sampling fields \\['temprature'\\]"):
        OpenAIInferenceAPI(api_key="k", model="m", temprature=0.2)
