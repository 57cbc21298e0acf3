"""`model: "auto"` and `"auto:<tag>"` on /v1/chat/completions and the WebSocket chat: the hard-coded, tags and
plan modes, only among blocks the caller may run, the route header, and abstention (404 or the default
block). The planner model is a fake OpenAI upstream whose replies each test scripts."""

from __future__ import annotations

import json

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator

from inference.models import PlannerConfig
from inference.planner.services import planner_config_update
from registry.models import Block
from registry.services import api_key_create
from registry.tenancy.models import PolicyRule
from tests.support.websocket_client import connect, frames_until_done
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

TRANSLATE = "Please do a translation of this german letter for me."


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def post(path: str, key: str, body: dict) -> tuple[int, dict, dict | bytes]:
    communicator = HttpCommunicator(application, "POST", path, body=orjson.dumps(body),
                                    headers=[(b"authorization", f"Bearer {key}".encode()),
                                             (b"content-type", b"application/json")])
    response = await communicator.get_response(timeout=30)
    headers = {k.decode(): v.decode() for k, v in response["headers"]}
    is_json = headers.get("content-type") == "application/json"
    return response["status"], headers, orjson.loads(response["body"]) if is_json else response["body"]


async def chat(key: str, model: str, text: str, **extra) -> tuple[int, dict, dict]:
    return await post("/v1/chat/completions", key, {"model": model, "messages": user(text), **extra})


@pytest.fixture
def catalogue(owner, outsider, upstream_block):
    """Two of acme's blocks, and a public globex block whose tags fit every task (never acme's to pick)."""
    upstream_block(owner.organization, "chunks2", block_id="acme-translate", tags=["translation", "german"],
                   description="Translates German letters and documents into English.")
    upstream_block(owner.organization, "chunks2", block_id="acme-summarize", tags=["summary", "news"],
                   description="Condenses long news articles into a few key points.")
    upstream_block(outsider.organization, block_id="globex-private", tags=["translation", "german", "letter"])


def configure(organization, **values) -> PlannerConfig:
    return planner_config_update(organization=organization, values=values, partial=True)


@pytest.fixture
def tags_mode(owner, catalogue):
    configure(owner.organization, mode=PlannerConfig.TAGS)


# Tags
async def test_tags_mode_picks_the_block_whose_tags_the_conversation_names(owner, tags_mode):
    status, headers, reply = await chat(owner.key, "auto", TRANSLATE)
    assert status == 200, reply
    assert reply["model"] == "acme-translate"
    route = headers["x-switchboard-route"]
    assert route.startswith("mode=tags; policy=tags; score=1.0000"), route


async def test_auto_with_a_tag_keeps_only_blocks_with_that_tag(owner, tags_mode):
    status, headers, reply = await chat(owner.key, "auto:summary", TRANSLATE)
    assert (status, reply["model"]) == (200, "acme-summarize")
    assert "mode=tags" in headers["x-switchboard-route"]
    status, _, reply = await chat(owner.key, "auto:legal", TRANSLATE)
    assert (status, reply["error"]["code"], reply["error"]["param"]) == (404, "no_fitting_model", "model")


async def test_a_conversation_no_block_fits_is_a_404_in_openais_shape(owner, tags_mode):
    status, headers, reply = await chat(owner.key, "auto", "What is the weather like on Mars?")
    assert status == 404
    assert reply["error"]["code"] == "no_fitting_model" and reply["error"]["type"] == "invalid_request_error"
    assert "default block" in reply["error"]["message"]
    assert headers["x-request-id"] and "x-switchboard-route" not in headers


async def test_with_a_default_block_nothing_fitting_runs_the_default(owner, tags_mode):
    await sync_to_async(configure)(owner.organization,
                                   default_block=await _block(owner.organization, "acme-summarize"))
    status, headers, reply = await chat(owner.key, "auto", "What is the weather like on Mars?")
    assert (status, reply["model"]) == (200, "acme-summarize")
    assert headers["x-switchboard-route"].startswith("mode=tags; default-block")


async def test_the_key_and_the_policy_rules_narrow_what_auto_may_pick(owner, tags_mode):
    _, limited = await sync_to_async(api_key_create)(organization=owner.organization, name="summaries only",
                                                     created_by=owner.user, allowed_models=["acme-summarize"])
    status, _, reply = await chat(limited, "auto", TRANSLATE + " Also a summary, please.")
    assert (status, reply["model"]) == (200, "acme-summarize")
    status, _, reply = await chat(limited, "auto", TRANSLATE)
    assert (status, reply["error"]["code"]) == (404, "no_fitting_model")
    # A block rule the request breaks (max_input_tokens) takes the block out of the running.
    translate = await _block(owner.organization, "acme-translate")
    await sync_to_async(PolicyRule.objects.create)(organization=owner.organization, block=translate,
                                                   max_input_tokens=5)
    status, _, reply = await chat(owner.key, "auto", TRANSLATE + " Also a summary, please.")
    assert (status, reply["model"]) == (200, "acme-summarize")


async def test_another_organizations_blocks_are_never_picked(outsider, catalogue):
    await sync_to_async(configure)(outsider.organization, mode=PlannerConfig.TAGS)
    status, _, reply = await chat(outsider.key, "auto", TRANSLATE)
    assert (status, reply["model"]) == (200, "globex-private")  # its own; acme's blocks are private


async def test_auto_streams_with_the_route_header(owner, tags_mode):
    status, headers, body = await chat(owner.key, "auto", TRANSLATE, stream=True)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert headers["x-switchboard-route"].startswith("mode=tags")
    chunks = [json.loads(line[6:]) for line in body.decode().split("\n")
              if line.startswith("data: {")]
    assert {c["model"] for c in chunks} == {"acme-translate"}


async def test_auto_is_refused_on_text_completions_and_an_empty_tag_is_refused(owner, tags_mode):
    status, _, reply = await post("/v1/completions", owner.key, {"model": "auto", "prompt": "Hello"})
    assert (status, reply["error"]["param"]) == (400, "model")
    status, _, reply = await chat(owner.key, "auto: ", TRANSLATE)
    assert (status, reply["error"]["param"]) == (400, "model")


# Hard-coded
async def test_hardcoded_mode_always_runs_the_default_block(owner, catalogue):
    await sync_to_async(configure)(owner.organization, mode=PlannerConfig.HARDCODED,
                                   default_block=await _block(owner.organization, "acme-summarize"))
    status, headers, reply = await chat(owner.key, "auto", TRANSLATE)
    assert (status, reply["model"]) == (200, "acme-summarize")
    assert headers["x-switchboard-route"].startswith("mode=hardcoded")


# Plan: search, then the planner model chooses
@pytest.fixture
def plan_mode(owner, catalogue, upstream_block, fake_upstream):
    def make(*replies: str) -> None:
        name = f"planner{len(fake_upstream._scripts)}"
        url = fake_upstream.script(name, *replies)
        planner = upstream_block(owner.organization, block_id=f"acme-{name}", config={"base_url": url},
                                 tags=["planner"], description="Chooses a block.")
        configure(owner.organization, mode=PlannerConfig.PLAN, planner_block=planner)
        return name

    return make


async def test_plan_mode_runs_the_block_the_planner_chose_and_says_why(owner, plan_mode, fake_upstream):
    name = await sync_to_async(plan_mode)('```json\n{"id": "acme-summarize", "reason": "it condenses news"}\n```')
    status, headers, reply = await chat(owner.key, "auto", "Boil this long article down to three bullet points.")
    assert (status, reply["model"]) == (200, "acme-summarize")
    route = headers["x-switchboard-route"]
    assert f"planner=acme-{name}; source=planner; reason=\"it condenses news\"" in route, route
    asked = fake_upstream.stats.scripted_bodies[name][0]
    assert asked["temperature"] == 0 and asked["response_format"]["type"] == "json_schema"
    ids = asked["response_format"]["json_schema"]["schema"]["properties"]["id"]["enum"]
    assert {"acme-translate", "acme-summarize", "none"} <= set(ids) and "globex-private" not in ids
    assert "Boil this long article down" in asked["messages"][-1]["content"]


async def test_a_bad_id_is_retried_once_with_the_error(owner, plan_mode, fake_upstream):
    name = await sync_to_async(plan_mode)('{"id": "gpt-4o", "reason": "strongest"}',
                                          '{"id": "acme-translate", "reason": "German letter"}')
    status, headers, reply = await chat(owner.key, "auto", TRANSLATE)
    assert (status, reply["model"]) == (200, "acme-translate")
    retry = fake_upstream.stats.scripted_bodies[name][1]["messages"]
    assert "'gpt-4o' is not one of the candidate ids" in retry[-1]["content"]
    assert "source=planner" in headers["x-switchboard-route"]


async def test_a_planner_that_never_answers_validly_falls_back_to_the_ranking(owner, plan_mode):
    await sync_to_async(plan_mode)("I would pick the translator.", "The translator!")
    status, headers, reply = await chat(owner.key, "auto", TRANSLATE)
    assert status == 200 and reply["model"] in ("acme-translate", "acme-summarize")
    assert "source=fallback" in headers["x-switchboard-route"]
    assert "refused the planner" in headers["x-switchboard-route"]


async def test_a_planner_that_finds_nothing_fits_abstains(owner, plan_mode):
    await sync_to_async(plan_mode)('{"id": "none", "reason": "no weather block"}')
    status, _, reply = await chat(owner.key, "auto", "What is the weather like on Mars?")
    assert (status, reply["error"]["code"]) == (404, "no_fitting_model")
    assert "no weather block" in reply["error"]["message"]


# WebSocket
async def test_the_websocket_done_frame_says_how_auto_chose(live_gateway, owner, tags_mode):
    async with connect(live_gateway.ws, additional_headers={"Authorization": f"Bearer {owner.key}"}) as ws:
        await ws.send(json.dumps({"id": "a1", "model": "auto", "messages": user(TRANSLATE)}))
        frames = await frames_until_done(ws, "a1")
        await ws.send(json.dumps({"id": "a2", "model": "auto", "messages": user("Weather on Mars?")}))
        refused = await frames_until_done(ws, "a2")
    done = frames[-1]
    assert done["type"] == "done" and done["model"] == "acme-translate"
    assert done["route"]["mode"] == "tags" and done["route"]["model"] == "acme-translate"
    assert refused[-1]["type"] == "error" and refused[-1]["error"]["code"] == "no_fitting_model"


@sync_to_async
def _block(organization, block_id: str) -> Block:
    return Block.objects.select_related("organization").get(organization=organization, block_id=block_id)


# Similarity (the default mode): the embedding search of registry.similarity, worded unlike the descriptions.
async def test_similarity_mode_picks_the_block_whose_description_fits_by_meaning(owner, catalogue):
    status, headers, reply = await chat(owner.key, "auto", "Render this paragraph from Berlin in plain English.")
    assert status == 200, reply
    assert reply["model"] == "acme-translate"
    route = headers["x-switchboard-route"]
    assert route.startswith("mode=similarity; policy=cosine; score="), route
    assert "acme-summarize" in route  # the runner-up is named
    status, _, reply = await chat(owner.key, "auto", "Give me the gist of this long press report in three bullets.")
    assert (status, reply["model"]) == (200, "acme-summarize")


async def test_similarity_mode_abstains_on_a_conversation_no_block_fits(owner, catalogue):
    status, _, reply = await chat(owner.key, "auto", "What temperature should I bake sourdough bread at?")
    assert (status, reply["error"]["code"], reply["error"]["type"]) == (404, "no_fitting_model", "invalid_request_error")
