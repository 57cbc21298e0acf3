"""One principal cache (registry.auth: hashed key -> Principal, KEY_CACHE_SECONDS), shared by the REST
API and every gateway transport: a revocation holds within one lifetime, and at once where it was made.

The gateway runs in-process (channels' communicator on webapp.asgi) with the real cache and clock.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from channels.testing import HttpCommunicator
from django.utils import timezone

from registry import auth
from registry.models import ApiKey, hash_api_key
from registry.tenancy.services import api_key_revoke
from tests.factories import BlockFactory
from webapp.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

TTL = auth.KEY_CACHE_SECONDS


@pytest.fixture
def block(org):
    return BlockFactory(organization=org, block_id="acme-llm")


async def chat(key: str) -> tuple[int, dict]:
    body = orjson.dumps({"model": "acme-llm", "messages": [{"role": "user", "content": "hi"}]})
    communicator = HttpCommunicator(application, "POST", "/v1/chat/completions", body=body, headers=[(b"authorization", f"Bearer {key}".encode()),
                                             (b"content-type", b"application/json")])
    response = await communicator.get_response(timeout=10)
    return response["status"], orjson.loads(response["body"])


def revoke_as_another_process(raw_key: str) -> None:
    """The row changes and nothing in this process hears of it: only the cache's lifetime stands between."""
    ApiKey.objects.filter(hashed_key=hash_api_key(raw_key)).update(revoked_at=timezone.now())


async def test_a_key_revoked_by_another_process_is_refused_by_the_gateway_within_one_cache_lifetime(owner, block):
    # The REST API's path (DRF, on a thread) loads the key into the cache...
    loaded = time.monotonic()
    await asyncio.to_thread(auth.principal_for, f"Bearer {owner.key}", None)
    await asyncio.to_thread(revoke_as_another_process, owner.key)
    revoked = time.monotonic()
    # ...and the gateway asks just before that entry expires: with a second cache stacked on the
    # first, this is where it would take the stale key for a lifetime of its own.
    await asyncio.sleep(max(0.0, loaded + 0.9 * TTL - time.monotonic()))
    answers = []
    while not answers or time.monotonic() < revoked + TTL + 0.3:
        sent = time.monotonic()
        answers.append((sent - revoked, *(await chat(owner.key))))
        await asyncio.sleep(0.05)
    late = [(status, body) for after, status, body in answers if after > TTL]
    assert late and all(status == 401 for status, _ in late), answers
    assert late[0][1]["error"] == {"message": "API key is expired or revoked", "type": "authentication_error",
                                   "param": None, "code": "invalid_api_key"}


async def test_a_key_revoked_in_this_process_is_refused_at_once_by_the_gateway_and_the_api(owner, block):
    assert (await chat(owner.key))[0] == 200  # warm in the one cache
    assert await asyncio.to_thread(auth.principal_for, f"Bearer {owner.key}", None) is not None
    key = await ApiKey.objects.aget(hashed_key=hash_api_key(owner.key))

    await asyncio.to_thread(api_key_revoke, api_key=key)

    assert (await chat(owner.key))[0] == 401
    with pytest.raises(auth.AuthError, match="expired or revoked"):
        await asyncio.to_thread(auth.principal_for, f"Bearer {owner.key}", None)


async def test_the_api_and_the_gateway_share_one_cache_entry_per_key(owner, block):
    assert (await chat(owner.key))[0] == 200
    gateway_principal = await auth.aprincipal_for(f"Bearer {owner.key}", None)
    api_principal = await asyncio.to_thread(auth.principal_for, f"Bearer {owner.key}", None)
    assert api_principal is gateway_principal  # one cache entry, not one per transport
