"""A run's DAG as a server-rendered SVG: nodes in layers (a node's layer is its longest path from a
root), edges as lines, each node coloured by its state (class `state-<state>`)."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from inference.workflows.graph import Graph

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 150, 44, 50, 18, 10


def layers(graph: Graph) -> dict[str, int]:
    depth: dict[str, int] = {}

    def of(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node not in depth:
            parents = [p for p in graph.parents.get(node, []) if p not in seen]  # a cycle never loops here
            depth[node] = 1 + max((of(p, seen | {node}) for p in parents), default=-1)
        return depth[node]

    for node in graph.order:
        of(node)
    return depth


def dag_svg(graph: Graph, *, states: dict[str, str], types: dict[str, str]) -> SafeString:
    depth = layers(graph)
    columns: dict[int, list[str]] = {}
    for node in graph.order:
        columns.setdefault(depth[node], []).append(node)
    where: dict[str, tuple[float, float]] = {}
    for column, nodes in columns.items():
        for row, node in enumerate(nodes):
            where[node] = (PAD + column * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max((len(n) for n in columns.values()), default=1) * (NODE_H + GAP_Y) - GAP_Y
    edges = format_html_join("", '<line class="edge" x1="{}" y1="{}" x2="{}" y2="{}"></line>', (
        (f"{where[parent][0] + NODE_W:.0f}", f"{where[parent][1] + NODE_H / 2:.0f}",
         f"{where[child][0]:.0f}", f"{where[child][1] + NODE_H / 2:.0f}")
        for child in graph.order for parent in graph.parents.get(child, [])))
    nodes = format_html_join("", (
        '<g class="node state-{}" data-node="{}" data-state="{}"><title>{} ({}): {}</title>'
        '<rect x="{}" y="{}" width="{}" height="{}" rx="6"></rect>'
        '<text x="{}" y="{}">{}</text><text class="sub" x="{}" y="{}">{} · {}</text></g>'), (
        (states.get(node, "pending"), node, states.get(node, "pending"), node, types.get(node, ""),
         states.get(node, "pending"), f"{x:.0f}", f"{y:.0f}", NODE_W, NODE_H,
         f"{x + 8:.0f}", f"{y + 18:.0f}", node[:20], f"{x + 8:.0f}", f"{y + 35:.0f}", types.get(node, ""),
         states.get(node, "pending"))
        for node, (x, y) in where.items()))
    return format_html('<svg class="dag" viewBox="0 0 {} {}" width="{}" role="img" aria-label="Workflow graph">'
                       '{}{}</svg>', width, height, width, edges, nodes)
