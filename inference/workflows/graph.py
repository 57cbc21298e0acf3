"""The DAG a workflow document describes: parents, children, branches, cycles, reachability.

Pure functions over the parsed document (no database): the validator and the executor share them,
so what upload accepted is exactly what a run walks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Graph:
    order: list[str]  # node ids in document order
    parents: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    # node id -> [(condition id, "then" | "else")]: the branches a node belongs to
    branches: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def roots(self) -> list[str]:
        return [n for n in self.order if not self.parents.get(n)]

    def ancestors(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.parents.get(node_id, []))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.parents.get(current, []))
        return seen

    def sinks(self) -> list[str]:
        return [n for n in self.order if not self.children.get(n)]


def build(nodes: list[dict[str, Any]]) -> Graph:
    """The graph of well-formed nodes (ids unique strings). A condition's `then`/`else` nodes get
    the condition as a parent implicitly; unknown ids are left out (the validator reports them)."""
    ids = [n["id"] for n in nodes]
    known = set(ids)
    graph = Graph(order=ids, parents={i: [] for i in ids}, children={i: [] for i in ids},
                  branches={i: [] for i in ids})

    def edge(parent: str, child: str) -> None:
        if parent in known and child in known and parent not in graph.parents[child]:
            graph.parents[child].append(parent)
            graph.children[parent].append(child)

    for node in nodes:
        for parent in node.get("after") or []:
            if isinstance(parent, str):
                edge(parent, node["id"])
        if node.get("type") == "condition":
            for branch in ("then", "else"):
                for child in node.get(branch) or []:
                    if isinstance(child, str) and child in known:
                        edge(node["id"], child)
                        graph.branches[child].append((node["id"], branch))
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Each cycle once, as the ids along it (iterative DFS, so a deep document cannot blow the stack)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph.order, WHITE)
    found: list[list[str]] = []
    for start in graph.order:
        if colour[start] != WHITE:
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                colour[node] = GREY
                path.append(node)
            children = graph.children[node]
            if index < len(children):
                stack.append((node, index + 1))
                child = children[index]
                if colour[child] == GREY:
                    found.append(path[path.index(child):] + [child])
                elif colour[child] == WHITE:
                    stack.append((child, 0))
            else:
                colour[node] = BLACK
                path.pop()
    return found


def startable(graph: Graph) -> list[str]:
    """Nodes in an order they can start (Kahn's algorithm): every parent before its child. A node on
    a cycle, or behind one, waits for a parent that never finishes and is left out."""
    waiting = {n: len(graph.parents[n]) for n in graph.order}
    ready = [n for n in graph.order if waiting[n] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in graph.children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return order
