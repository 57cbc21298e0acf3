"""The planner (the seed's "Planner Module"): which block runs a task, by a hard-coded choice, by tags, by
similarity, or by asking a planner model (plan -> search -> retrieve -> execute). docs/planner.md.

Python API:
    LLMSelectorPlanner(ask).select(task, candidates, fallback=...)   selector.py (OptimizerSelector alike)
    route_conversation(...)        routing.py: what `model: "auto"` runs on, and why
    planner_select(...)            selection.py: POST /api/planner/select
"""
