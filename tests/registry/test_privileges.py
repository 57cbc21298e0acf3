"""Issue 8, privileges: only owners write blocks, and a kept secret never follows a new destination.

Regression tests for the finding "a member can create public blocks, flip a private block to public,
and repoint a block's base_url while sending *** to keep the stored upstream API key, which then
arrives at the new host".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference.sdk import in_process
from registry.models import Block
from registry.tenancy.models import OrgModel
from tests.factories import BlockFactory

pytestmark = pytest.mark.django_db

OLD_SECRET = "sk-old-upstream-secret"


@pytest.fixture
def private_block(org) -> Block:
    return BlockFactory(block_id="acme-private", organization=org)


# Writing a block needs the owner role.


@pytest.mark.parametrize("visibility", ["private", "public"])
def test_a_member_cannot_create_a_block(member, visibility):
    response = member.client().post("/api/blocks", {"id": "by-member", "visibility": visibility}, format="json")
    assert response.status_code == 403
    assert response.json() == {"success": False, "message": "Only organization owners may register blocks."}
    assert not Block.objects.filter(block_id="by-member").exists()


def test_a_member_cannot_make_a_block_public(member, private_block):
    response = member.client().patch("/api/blocks/acme-private", {"visibility": "public"}, format="json")
    assert response.status_code == 403
    assert response.json() == {"success": False, "message": "Only organization owners may change or delete blocks."}
    private_block.refresh_from_db()
    assert private_block.visibility == Block.PRIVATE


@pytest.mark.parametrize("method", ["patch", "put"])
def test_a_member_cannot_repoint_a_blocks_backend(member, private_block, method):
    body = {"backend": {"type": "openai", "config": {"base_url": "http://attacker.example/v1", "api_key": "***"}}}
    response = getattr(member.client(), method)("/api/blocks/acme-private", body, format="json")
    assert response.status_code == 403
    private_block.refresh_from_db()
    assert private_block.backend_type == "python"


def test_a_member_cannot_rename_or_delete_a_block(member, private_block):
    assert member.client().patch("/api/blocks/acme-private", {"name": "m"}, format="json").status_code == 403
    assert member.client().delete("/api/blocks/acme-private").status_code == 403
    private_block.refresh_from_db()
    assert private_block.name == "acme-private"


def test_a_member_still_reads_the_organizations_blocks(member, private_block):
    assert member.client().get("/api/blocks/acme-private").json()["data"]["id"] == "acme-private"
    assert [b["id"] for b in member.client().get("/api/blocks").json()["data"]] == ["acme-private"]


def test_a_member_cannot_register_a_model_name_for_the_organization(member, private_block):
    response = member.client().post("/api/orgs/acme/models", {"name": "alias", "block_id": "acme-private"},
                                    format="json")
    assert response.status_code == 403
    assert not OrgModel.objects.exists()


def test_an_owner_creates_publishes_repoints_and_deletes_a_block(owner):
    client = owner.client()
    assert client.post("/api/blocks", {"id": "mine"}, format="json").status_code == 201
    assert client.patch("/api/blocks/mine", {"visibility": "public"}, format="json").json()["data"]["visibility"] \
        == "public"
    backend = {"type": "openai", "config": {"base_url": "http://upstream.example/v1"}}
    assert client.put("/api/blocks/mine", {"backend": backend}, format="json").status_code == 200
    assert client.delete("/api/blocks/mine").status_code == 200


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_another_organizations_owner_gets_a_404_for_a_block_write(outsider, private_block, method):
    response = getattr(outsider.client(), method)("/api/blocks/acme-private", {"visibility": "public"},
                                                  format="json")
    assert response.status_code == 404
    assert response.json() == {"success": False, "message": "block not found"}


def test_anonymous_callers_cannot_write_blocks(anon, private_block):
    assert anon.post("/api/blocks", {"id": "anon"}, format="json").status_code in (401, 403)
    assert anon.patch("/api/blocks/acme-private", {"visibility": "public"}, format="json").status_code in (401, 403)
    private_block.refresh_from_db()
    assert private_block.visibility == Block.PRIVATE


# A secret kept with *** stays only at the same destination.


@pytest.fixture
def openai_block(org) -> Block:
    return BlockFactory(block_id="acme-upstream", organization=org, backend_type="openai",
                        backend_config={"base_url": "http://old.example/v1", "api_key": OLD_SECRET})


@pytest.mark.parametrize("backend, moved", [
    ({"type": "openai", "config": {"base_url": "http://new.example/v1", "api_key": "***"}},
     "backend.config.base_url"),
    ({"type": "openai", "config": {"api_key": "***"}}, "backend.config.base_url"),
    ({"type": "aios_grpc", "config": {"target": "new.example:50051", "base_url": "http://old.example/v1",
                                      "api_key": "***"}}, "backend.type"),
])
def test_sending_the_mask_with_a_changed_destination_is_refused(owner, openai_block, backend, moved):
    response = owner.client().patch("/api/blocks/acme-upstream", {"backend": backend}, format="json")
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("backend.config.api_key: send the api_key again: the destination changed")
    assert moved in message
    openai_block.refresh_from_db()
    assert openai_block.backend_config == {"base_url": "http://old.example/v1", "api_key": OLD_SECRET}


def test_sending_the_mask_to_the_same_destination_keeps_the_secret(owner, openai_block):
    backend = {"type": "openai", "config": {"base_url": "http://old.example/v1", "api_key": "***", "model": "m"}}
    response = owner.client().put("/api/blocks/acme-upstream", {"backend": backend}, format="json")
    assert response.status_code == 200
    assert response.json()["data"]["backend"]["config"]["api_key"] == "***"
    openai_block.refresh_from_db()
    assert openai_block.backend_config == {"base_url": "http://old.example/v1", "api_key": OLD_SECRET, "model": "m"}


@pytest.fixture
def header_secret_block(org) -> Block:
    return BlockFactory(block_id="acme-header-secret", organization=org, backend_type="openai",
                        backend_config={"base_url": "http://old.example/v1",
                                        "headers": {"Authorization": f"Bearer {OLD_SECRET}", "X-Title": "acme"}})


def test_a_credential_in_config_headers_reads_back_masked(member, header_secret_block):
    config = member.client().get("/api/blocks/acme-header-secret").json()["data"]["backend"]["config"]
    assert config["headers"] == {"Authorization": "***", "X-Title": "acme"}


def test_a_masked_header_credential_is_kept_only_for_the_same_destination(owner, header_secret_block):
    same = {"type": "openai", "config": {"base_url": "http://old.example/v1",
                                         "headers": {"Authorization": "***", "X-Title": "renamed"}}}
    assert owner.client().put("/api/blocks/acme-header-secret", {"backend": same}, format="json").status_code == 200
    header_secret_block.refresh_from_db()
    assert header_secret_block.backend_config["headers"] == {"Authorization": f"Bearer {OLD_SECRET}",
                                                             "X-Title": "renamed"}
    moved = {"type": "openai", "config": {"base_url": "http://new.example/v1", "headers": {"Authorization": "***"}}}
    response = owner.client().put("/api/blocks/acme-header-secret", {"backend": moved}, format="json")
    assert response.status_code == 400
    assert "send the headers.Authorization again: the destination changed" in response.json()["message"]
    header_secret_block.refresh_from_db()
    assert header_secret_block.backend_config["base_url"] == "http://old.example/v1"


def test_a_new_destination_with_a_new_secret_is_accepted(owner, openai_block):
    backend = {"type": "openai", "config": {"base_url": "http://new.example/v1", "api_key": "sk-new"}}
    assert owner.client().patch("/api/blocks/acme-upstream", {"backend": backend}, format="json").status_code == 200
    openai_block.refresh_from_db()
    assert openai_block.backend_config == {"base_url": "http://new.example/v1", "api_key": "sk-new"}


class _RecordingUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream that remembers the Authorization header of every request."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.server.seen.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"id": "c", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": self.server.answer},
             "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _recording_upstream(answer: str) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingUpstream)
    server.seen, server.answer = [], answer
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def old_host() -> Iterator[ThreadingHTTPServer]:
    yield from _recording_upstream("from the old host")


@pytest.fixture
def new_host() -> Iterator[ThreadingHTTPServer]:
    yield from _recording_upstream("from the new host")


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_port}/v1"


def test_the_stored_secret_never_reaches_a_host_the_block_is_repointed_to(owner, org, old_host, new_host):
    BlockFactory(block_id="acme-upstream", organization=org, backend_type="openai",
                 backend_config={"base_url": _url(old_host), "api_key": OLD_SECRET})
    client = owner.client()
    repoint = {"backend": {"type": "openai", "config": {"base_url": _url(new_host), "api_key": "***"}}}
    assert client.patch("/api/blocks/acme-upstream", repoint, format="json").status_code == 400

    # The block still calls the old host, with the old secret; the new host has heard nothing.
    assert in_process.run_ai_inference(block_id="acme-upstream", input_data={"text": "hi"}) == "from the old host"
    assert old_host.seen == [f"Bearer {OLD_SECRET}"]
    assert new_host.seen == []

    # Repointed with the new host's own secret, the block calls it with that one only.
    repoint["backend"]["config"]["api_key"] = "sk-for-the-new-host"
    assert client.patch("/api/blocks/acme-upstream", repoint, format="json").status_code == 200
    assert in_process.run_ai_inference(block_id="acme-upstream", input_data={"text": "hi"}) == "from the new host"
    assert new_host.seen == ["Bearer sk-for-the-new-host"]
    assert OLD_SECRET not in str(new_host.seen)


def test_a_repointed_block_without_a_secret_sends_none(owner, org, old_host, new_host):
    BlockFactory(block_id="acme-upstream", organization=org, backend_type="openai",
                 backend_config={"base_url": _url(old_host), "api_key": OLD_SECRET})
    repoint = {"backend": {"type": "openai", "config": {"base_url": _url(new_host)}}}
    assert owner.client().patch("/api/blocks/acme-upstream", repoint, format="json").status_code == 200
    assert in_process.run_ai_inference(block_id="acme-upstream", input_data={"text": "hi"}) == "from the new host"
    assert len(new_host.seen) == 1 and OLD_SECRET not in str(new_host.seen)
