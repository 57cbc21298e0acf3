"""The planner tests use the gateway's fake OpenAI upstream as their planner model."""

from tests.gateway.conftest import _no_metrics_left_behind  # noqa: F401 (an autouse fixture)
