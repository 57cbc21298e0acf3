"""The planner tests use the gateway's fake OpenAI upstream as their planner model."""

from tests.gateway.conftest import _fresh_gateway_caches, fake_upstream, upstream_block  # noqa: F401 (fixtures)
