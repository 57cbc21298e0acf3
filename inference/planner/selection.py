"""POST /api/planner/select as a service: a planner model chooses one block for a task.

The candidates are the blocks the caller names (each one it may run, or the request is refused), else the
best `limit` of a similarity search over the blocks of that kind it may run. They are ranked by
similarity either way: the ranking's first is the fallback when the planner cannot answer validly. The
planner block is the one named, else the organization's configured one; the caller must be allowed to run
it, and its call goes through the gateway like any chat (quota, metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections

from inference.planner.candidates import Hit, resolve_reference, searchable, usable
from inference.planner.routing import AskFor, supports_json_schema
from inference.planner.selector import LLMSelectorPlanner, OptimizerSelector, Selection, Task
from inference.planner.selectors import planner_config_cached
from inference.planner.similarity_mode import similar_blocks
from registry.asyncdb import in_db_thread
from registry.models import Block
from registry.principal import Principal
from registry.selectors import block_reference

MAX_CANDIDATES = 50
SELECTORS: dict[str, type[LLMSelectorPlanner]] = {Block.LLM: LLMSelectorPlanner, Block.OPTIMIZER: OptimizerSelector}


class SelectRefused(Exception):
    """`status`: 403 (the key may not use a named block), 404 (no such block for the caller), 422 (no planner)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SelectResult:
    selection: Selection
    planner: str
    ranking: list[Hit]
    principal: Principal

    def to_dict(self) -> dict[str, Any]:
        organization = self.principal.organization
        return {**self.selection.to_dict(), "planner": self.planner,
                "candidates": [{"id": block_reference(hit.block, organization=organization), "score": hit.score}
                               for hit in self.ranking]}


def _resolve(principal: Principal, references: list[str], kind: str) -> list[tuple[str, Block | None]]:
    close_old_connections()
    return [(reference, resolve_reference(principal, reference, kind=kind)) for reference in references]


def _rank(principal: Principal, task: str, kind: str, blocks: list[Block] | None, limit: int) -> list[Hit]:
    close_old_connections()
    if blocks is None:
        return similar_blocks(principal=principal, task=task, kind=kind, tag=None, limit=limit)
    ids = sorted({block.block_id for block in blocks})
    # Ids repeat across organizations: rank every block with these ids, keep the ones named.
    hits = similar_blocks(principal=principal, task=task, kind=kind, tag=None, limit=min(1000, 10 * len(ids)),
                          filter_rule=[{"variable": "id", "operator": "IN", "value": ids}])
    scores = {hit.block.pk: hit for hit in hits}
    ranked = [scores.get(block.pk) or Hit(block=block, score=0.0) for block in blocks]
    return sorted(ranked, key=lambda hit: -hit.score)


_aresolve = in_db_thread(_resolve)
_arank = in_db_thread(_rank)


async def _usable_named(principal: Principal, references: list[str], kind: str, what: str) -> list[Block]:
    blocks: list[Block] = []
    for reference, block in await _aresolve(principal, references, kind):
        if block is None:
            raise SelectRefused(404, f"{what} {reference!r}: no runnable {kind} block by that name that you may see")
        if not principal.allows_block(block):
            raise SelectRefused(403, f"{what} {reference!r}: this API key is not allowed to use it")
        if not await usable(principal, block):
            raise SelectRefused(404, f"{what} {reference!r}: no runnable {kind} block by that name that you may see")
        if all(block.pk != seen.pk for seen in blocks):
            blocks.append(block)
    return blocks


async def planner_select(*, principal: Principal, task: Task, kind: str, candidates: list[str] | None,
                         planner: str | None, limit: int, ask_for: AskFor) -> SelectResult:
    if planner is not None:
        planner_block = (await _usable_named(principal, [planner], Block.LLM, "planner"))[0]
    else:
        planner_block = (await planner_config_cached(principal.organization)).planner_block
        if planner_block is None:
            raise SelectRefused(422, "no planner block: name one in 'planner', or configure the organization's "
                                     "plannerBlock (PUT /api/planner/config)")
        if not await usable(principal, planner_block):
            raise SelectRefused(403, "the organization's planner block cannot be used with this API key")
    named = None if candidates is None else await _usable_named(principal, candidates, kind, "candidate")
    ranking = await _arank(principal, task.text, kind, named, limit)
    if named is None:
        ranking = [hit for hit in ranking if await usable(principal, hit.block)][:limit]
    selector = SELECTORS[kind](ask_for(planner_block), json_schema=supports_json_schema(planner_block))
    representations = [searchable(hit.block, principal) for hit in ranking]
    selection = await selector.select(task, representations, fallback=[r["id"] for r in representations])
    return SelectResult(selection=selection, planner=block_reference(planner_block, organization=principal.organization),
                        ranking=ranking, principal=principal)
