"""The planner tests use the gateway's fake OpenAI upstream as their planner model."""

from tests.gateway.conftest import _no_metrics_left_behind, fake_upstream, upstream_block  # noqa: F401 (fixtures)
