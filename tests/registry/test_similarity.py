"""Similarity search (issue 10): relevance on the fixture, the seed's API, the policies, tenancy, and
embeddings kept current. The suite's PostgreSQL has no pgvector, so these rank by the exact scan;
tests/registry/test_similarity_pgvector.py shows pgvector ranks the same."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings as server_settings
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from inference.models import BlockMetricBucket
from registry.embeddings import EMBEDDING_MODEL_VERSION
from registry.models import Block, BlockEmbedding, BlockGrant
from registry.services import api_key_create
from registry.similarity import blocks_similar, similarity_abstains
from registry.similarity.services import blocks_needing_embedding, embedding_thread_join
from registry.similarity.vectors import store_vector
from registry.tasks import embed_blocks
from tests.factories import BlockFactory
from tests.registry.relevance import (
    calibrated_min_score,
    fitting_tasks,
    load_relevance_blocks,
    measure_relevance,
)

pytestmark = pytest.mark.django_db

SEED_PATH = "policies/similarity_policy.zip"


def payload(task: str, *, policy=SEED_PATH, conditions=None, settings=None, parameters=None) -> dict:
    return {"body": {"values": {"matchType": "cluster", "rankingPolicyRule": {"values": {
        "executionMode": "code", "policyCodePath": policy,
        "settings": settings or {"maxResults": 10, "enableCaching": True},
        "parameters": {"filterRule": {"clusterQuery": {"logicalOperator": "AND", "conditions": [
            {"variable": "task_description", "operator": "LIKE", "value": task}, *(conditions or [])]}},
            **(parameters or {})}}}}}}


def search(party, task: str, **kwargs):
    return party.client().post("/api/blocks/similarity", payload(task, **kwargs), format="json")


def ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["data"]]


# Relevance on the fixture (tests/registry/fixtures/relevance.json; figures in docs/planning.md).


def _cosine_rank(org):
    def rank(task: str):
        hits = blocks_similar(organization=org, task=task, limit=10)
        return [hit.block.block_id for hit in hits], similarity_abstains(hits)
    return rank


def test_the_abstention_threshold_is_the_one_the_calibration_half_of_the_fixture_chooses(org):
    load_relevance_blocks(org)
    best = [blocks_similar(organization=org, task=task, limit=1)[0].parts["similarity"]
            for task in fitting_tasks("calibration")]
    # SIMILARITY_MIN_SCORE ships rounded to 4 decimals; re-run this calibration after changing the
    # model, the searchable text or the fixture's calibration half.
    assert server_settings.SIMILARITY_MIN_SCORE == pytest.approx(calibrated_min_score(best), abs=5e-5)


def test_on_the_held_out_half_the_default_policy_finds_the_right_block_and_abstains_when_none_fits(org):
    load_relevance_blocks(org)
    measured = measure_relevance(_cosine_rank(org), "held-out")
    # The targets, on tasks nothing was tuned on: top-3 >= 95 %, abstains on >= 80 % of the no-fit
    # tasks and <= 5 % of the fitting ones. Measured 96 % / 87.5 % / 4 %.
    assert measured.top3 >= 0.95, measured.misses
    assert measured.abstain_no_fit >= 0.8
    assert measured.abstain_fitting <= 0.05
    # Top-1: measured 76 %, short of the 85 % (docs/planning.md: what was tried, what is left).
    assert measured.top1 >= 0.76, measured.misses


def test_embeddings_beat_the_old_stem_overlap_on_the_same_fixture(org):
    load_relevance_blocks(org)

    def rank_with(policy: str):
        def rank(task: str):
            hits = blocks_similar(organization=org, task=task, policy=policy, limit=10)
            return [hit.block.block_id for hit in hits], not hits
        return rank

    assert measure_relevance(rank_with("cosine")).top1 >= measure_relevance(rank_with("text-overlap")).top1 + 0.4


# The seed's API.


def test_the_seed_payload_with_its_example_policy_path_ranks_by_cosine_with_scores_and_parts(owner):
    load_relevance_blocks(owner.organization)
    response = search(owner, "render this German paragraph in English", parameters={"return": 3})
    assert ids(response)[0] == "polyglot-translator"
    body = response.json()
    assert body["policy"] == "cosine" and body["abstain"] is False and len(body["data"]) == 3
    first = body["data"][0]
    assert first["parts"] == {"similarity": first["score"]}
    assert [d["score"] for d in body["data"]] == sorted((d["score"] for d in body["data"]), reverse=True)


def test_a_task_no_block_fits_is_answered_with_abstain_true(owner):
    load_relevance_blocks(owner.organization)
    body = search(owner, "turn up the thermostat in the living room").json()
    assert body["abstain"] is True and body["data"]  # the ranking is still there to look at


def test_the_filter_rule_narrows_the_candidates_before_ranking(owner):
    load_relevance_blocks(owner.organization)
    only_images = [{"variable": "inputProtocols", "operator": "==", "value": "image/png"}]
    found = ids(search(owner, "render this German paragraph in English", conditions=only_images))
    assert found and "polyglot-translator" not in found
    assert all("image/png" in Block.objects.get(block_id=i).input_protocols for i in found)
    assert ids(search(owner, "what is shown in this photo?", conditions=only_images))[0] == "image-captioner"


def test_max_results_and_return_both_cap_the_results(owner):
    load_relevance_blocks(owner.organization)
    assert len(ids(search(owner, "draw a lighthouse", settings={"maxResults": 4}))) == 4
    assert len(ids(search(owner, "draw a lighthouse", settings={"maxResults": 4}, parameters={"return": 2}))) == 2


@pytest.mark.parametrize(("policy", "message"), [
    ("policies/my_policy.zip", "is not a built-in policy"),
    ("nearest-neighbour", "use one of: cosine, hybrid, performance, text-overlap"),
])
def test_an_unknown_policy_is_a_400_naming_the_registered_ones(owner, policy, message):
    response = search(owner, "anything", policy=policy)
    assert response.status_code == 400 and message in response.json()["message"]


def test_enable_caching_must_be_a_boolean(owner):
    response = search(owner, "anything", settings={"enableCaching": "yes"})
    assert response.status_code == 400 and "enableCaching" in response.json()["message"]


def test_with_caching_off_the_ranking_is_the_same(owner):
    load_relevance_blocks(owner.organization)
    cached = search(owner, "compose a sonnet about autumn rain").json()["data"]
    fresh = search(owner, "compose a sonnet about autumn rain", settings={"enableCaching": False}).json()["data"]
    assert [(d["id"], d["score"]) for d in cached] == [(d["id"], d["score"]) for d in fresh]


# The policies.


def test_the_builtin_prefix_names_a_policy_too(owner):
    load_relevance_blocks(owner.organization)
    assert search(owner, "compose a sonnet", policy="builtin:cosine").json()["policy"] == "cosine"


def test_hybrid_fuses_the_vector_and_the_lexical_rankings(owner):
    load_relevance_blocks(owner.organization)
    body = search(owner, "regular expression for UK postcodes", policy="hybrid").json()
    first = body["data"][0]
    assert first["id"] == "regex-smith"
    assert set(first["parts"]) == {"similarity", "lexical", "vectorRank", "lexicalRank"}
    assert first["parts"]["lexical"] > 0 and first["parts"]["vectorRank"] >= 1 and first["parts"]["lexicalRank"] >= 1
    # RRF: each list the block is in adds 1 / (k + rank).
    assert first["score"] == pytest.approx(1 / (60 + first["parts"]["vectorRank"]) + 1 / (60 + first["parts"]["lexicalRank"]),
                                           abs=1e-6)


def _twins(org) -> tuple[Block, Block]:
    text = {"description": "Translates text between many languages.", "tags": ["translation"]}
    return (BlockFactory(block_id="twin-a", name="twin", organization=org, **text),
            BlockFactory(block_id="twin-b", name="twin", organization=org, **text))


def _metrics(block: Block, *, requests: int, errors: int, p50_ms: float) -> None:
    BlockMetricBucket.objects.create(block=block, organization=block.organization,
                                     minute=timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1),
                                     requests=requests, errors=errors, latency_ms_sum=p50_ms * requests,
                                     latency_hist={f"{p50_ms:g}": requests})


def test_performance_puts_the_faster_more_reliable_of_two_equal_fits_first(owner):
    slow, fast = _twins(owner.organization)
    _metrics(slow, requests=100, errors=20, p50_ms=3000)
    _metrics(fast, requests=100, errors=0, p50_ms=200)
    assert ids(search(owner, "translate this into French", policy="cosine"))[:2] == ["twin-a", "twin-b"]
    body = search(owner, "translate this into French", policy="performance").json()
    assert [d["id"] for d in body["data"]][:2] == ["twin-b", "twin-a"]
    parts = {d["id"]: d["parts"] for d in body["data"]}
    assert parts["twin-a"]["errors"] == 0.2 and parts["twin-b"]["errors"] == 0.0
    assert parts["twin-a"]["latency"] > parts["twin-b"]["latency"] > 0
    assert parts["twin-a"]["similarity"] == parts["twin-b"]["similarity"]


def test_performance_counts_only_the_callers_own_traffic_on_a_block_it_does_not_own(owner, outsider):
    slow, fast = _twins(owner.organization)
    Block.objects.filter(pk__in=[slow.pk, fast.pk]).update(visibility=Block.PUBLIC)
    _metrics(slow, requests=100, errors=50, p50_ms=5000)  # acme's own traffic: not the outsider's to see
    body = search(outsider, "translate this into French", policy="performance").json()
    parts = {d["id"]: d["parts"] for d in body["data"]}
    assert parts["twin-a"] == parts["twin-b"] == {"similarity": parts["twin-a"]["similarity"], "latency": 0.5,
                                                  "errors": 0.0}


def test_text_overlap_still_ranks_by_shared_stems_when_named(owner):
    load_relevance_blocks(owner.organization)
    body = search(owner, "translate German into English", policy="text-overlap").json()
    assert body["data"][0]["id"] == "polyglot-translator" and set(body["data"][0]["parts"]) == {"overlap"}


# Tenancy: visibility, a weaker role, a restricted key.


def test_another_organizations_private_block_is_never_a_candidate(owner, outsider):
    BlockFactory(block_id="globex-translator", organization=outsider.organization,
                 description="Translates German into English.")
    load_relevance_blocks(owner.organization)
    assert "globex-translator" not in ids(search(owner, "render this German paragraph in English"))
    assert ids(search(outsider, "render this German paragraph in English")) == ["globex-translator"]


def test_a_granted_block_is_a_candidate_for_the_organization_it_is_granted_to(owner, outsider):
    block = BlockFactory(block_id="acme-translator", organization=owner.organization,
                         description="Translates German into English.")
    assert ids(search(outsider, "German to English please")) == []
    BlockGrant.objects.create(block=block, organization=outsider.organization)
    assert ids(search(outsider, "German to English please")) == ["acme-translator"]


def test_a_member_searches_like_an_owner(owner, member):
    load_relevance_blocks(owner.organization)
    assert ids(search(member, "compose a sonnet")) == ids(search(owner, "compose a sonnet"))


def test_a_key_restricted_to_some_models_only_finds_those(owner):
    load_relevance_blocks(owner.organization)
    _, raw = api_key_create(organization=owner.organization, name="narrow", created_by=owner.user,
                            allowed_models=["verse-maker", "acme/story-teller"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post("/api/blocks/similarity", payload("render this German paragraph"), format="json")
    assert sorted(ids(response)) == ["story-teller", "verse-maker"]


def test_without_a_key_the_similarity_api_is_a_401(anon):
    assert anon.post("/api/blocks/similarity", payload("anything"), format="json").status_code == 401


# Embeddings kept current.


def test_a_new_or_changed_block_is_pending_until_embedded_and_a_search_embeds_it_first(owner):
    block = BlockFactory(block_id="helper", organization=owner.organization, description="Writes sonnets.")
    assert BlockEmbedding.objects.get(block=block).pending
    assert ids(search(owner, "a poem about the sea"))[0] == "helper"
    row = BlockEmbedding.objects.get(block=block)
    assert not row.pending and row.model_version == EMBEDDING_MODEL_VERSION
    before = search(owner, "draw a watercolor of a lighthouse").json()["data"][0]["score"]
    block.description = "Paints watercolor pictures of landscapes from a prompt."
    block.save()
    assert BlockEmbedding.objects.get(block=block).pending
    assert search(owner, "draw a watercolor of a lighthouse").json()["data"][0]["score"] > before + 0.1


def test_a_write_that_leaves_the_searchable_text_alone_keeps_the_embedding(owner):
    block = BlockFactory(block_id="helper", organization=owner.organization, description="Writes sonnets.")
    search(owner, "a poem")
    block.enabled = False
    block.save()
    assert not BlockEmbedding.objects.get(block=block).pending


def test_an_embedding_of_an_older_text_never_overwrites_a_newer_pending_mark(owner):
    block = BlockFactory(block_id="helper", organization=owner.organization, description="Writes sonnets.")
    stale_revision = BlockEmbedding.objects.get(block=block).revision
    block.description = "Paints pictures."
    block.save()


    assert store_vector(block_pk=block.pk, revision=stale_revision, vector=np.ones(384, dtype=np.float32) / 384**0.5,
                        digest="old") is False
    assert BlockEmbedding.objects.get(block=block).pending


def test_the_celery_task_embeds_the_blocks_it_is_given(owner):
    block = BlockFactory(block_id="helper", organization=owner.organization, description="Writes sonnets.")
    assert embed_blocks.apply(args=[[block.pk]]).get() == 1
    assert not BlockEmbedding.objects.get(block=block).pending


@pytest.mark.django_db(transaction=True)
def test_in_thread_mode_a_committed_write_is_embedded_in_the_background(org, settings):
    settings.EMBEDDINGS_DISPATCH = "thread"
    block = BlockFactory(block_id="helper", organization=org, description="Writes sonnets.")
    embedding_thread_join()
    row = BlockEmbedding.objects.get(block=block)
    assert not row.pending and row.model_version == EMBEDDING_MODEL_VERSION


def test_embed_blocks_re_embeds_missing_pending_and_other_model_rows(org):
    blocks = [BlockFactory(block_id=f"b{i}", organization=org, description=f"Block number {i}.") for i in range(3)]
    BlockEmbedding.objects.filter(block=blocks[0]).delete()  # as after a bulk load
    BlockEmbedding.objects.filter(block=blocks[1]).update(pending=False, model_version="some-older-model")
    assert set(blocks_needing_embedding()) == set(blocks)
    call_command("embed_blocks")
    assert list(blocks_needing_embedding()) == []
    assert set(BlockEmbedding.objects.values_list("model_version", flat=True)) == {EMBEDDING_MODEL_VERSION}
