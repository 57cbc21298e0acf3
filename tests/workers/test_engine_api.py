"""GET /api/engines: the engines of an organization's blocks, their state and whether they are routable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inference.backends.engines import _ready_engines
from inference.models import Engine
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def engines(org, other_org):
    mine = BlockFactory(organization=org, block_id="mine", backend_type="sglang", backend_config={})
    theirs = BlockFactory(organization=other_org, block_id="theirs", backend_type="sglang", backend_config={},
                          visibility="public")
    now = timezone.now()
    Engine.objects.create(block=mine, node="a", endpoint="http://10.0.0.1:30000", state=Engine.READY,
                          last_heartbeat=now, restarts=2)
    Engine.objects.create(block=mine, node="b", endpoint="http://10.0.0.2:30000", state=Engine.READY,
                          last_heartbeat=now - timedelta(minutes=1))
    Engine.objects.create(block=theirs, node="c", endpoint="http://10.0.0.3:30000", state=Engine.READY,
                          last_heartbeat=now)


def test_it_lists_the_orgs_engines_with_state_and_routability(member, engines):
    response = member.client().get("/api/engines")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [(e["node"], e["state"], e["routable"], e["restarts"]) for e in data] == [
        ("a", "ready", True, 2), ("b", "ready", False, 0)]


def test_it_filters_by_block_and_state(member, engines):
    assert member.client().get("/api/engines", {"state": "dead"}).json()["data"] == []
    assert len(member.client().get("/api/engines", {"block": "mine", "state": "ready"}).json()["data"]) == 2


def test_it_rejects_an_unknown_state(member, engines):
    response = member.client().get("/api/engines", {"state": "sleepy"})
    assert response.status_code == 400
    assert response.json()["success"] is False and "state must be one of" in response.json()["message"]


def test_it_never_shows_another_orgs_engines(outsider, engines):
    data = outsider.client().get("/api/engines").json()["data"]
    assert [e["block"] for e in data] == ["theirs"]


def test_it_requires_a_key(anon, engines):
    response = anon.get("/api/engines")
    assert response.status_code in (401, 403)
    assert response.json()["success"] is False


def test_engines_are_chosen_by_block_row_when_two_organizations_share_an_id(org, other_org):
    mine = BlockFactory(organization=org, block_id="same", backend_type="sglang")
    theirs = BlockFactory(organization=other_org, block_id="same", backend_type="sglang")
    for block, port in ((mine, 1), (theirs, 2)):
        Engine.objects.create(block=block, node="n", endpoint=f"http://127.0.0.1:{port}", state=Engine.READY,
                              last_heartbeat=timezone.now())
    assert [e.endpoint for e in _ready_engines(mine.pk)] == ["http://127.0.0.1:1"]
    assert [e.endpoint for e in _ready_engines(theirs.pk)] == ["http://127.0.0.1:2"]
