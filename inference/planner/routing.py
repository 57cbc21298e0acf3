"""`model: "auto"` and `"auto:<tag>"`: choose the block a conversation runs on, by the organization's mode.

- `hardcoded`: the organization's default block, always.
- `tags`: the blocks whose tags the conversation names (inference/planner/candidates.py), most first.
- `similarity`: the blocks whose description fits the conversation best by meaning; none if the best one
  scores under the threshold (similarity_mode.py).
- `plan` (plan -> search -> retrieve -> execute): search by similarity, keep the best `candidates`, ask the
  planner block (an LLM) to choose among them (selector.py); if it cannot, the search's first, as in
  `similarity`.

`auto:<tag>` keeps only blocks with that tag, in every mode but `hardcoded`. Only blocks the caller may run
are ever chosen (candidates.usable: visibility, allowed_models, the organization's policy rules). When
nothing fits, the organization's default block runs if it has one; otherwise NoFittingModel (the
gateway's 404 `no_fitting_model`). The Route says how the block was chosen: the gateway sends it as the
`x-switchboard-route` header and in the WebSocket `done` frame; POST /api/planner/explain returns it whole.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections

from inference.backends.base import ChatRequest
from inference.models import PlannerConfig
from inference.planner.candidates import Hit, searchable, tag_ranking, usable
from inference.planner.selector import Ask, LLMSelectorPlanner, Selection
from inference.planner.selectors import planner_config_cached
from inference.planner.similarity_mode import DEFAULT_POLICY, fits, min_score, similar_blocks
from inference.planner.task import task_from_request
from registry.asyncdb import in_db_thread
from registry.models import Block
from registry.principal import Principal
from registry.selectors import block_reference

AUTO = "auto"
AUTO_PREFIX = "auto:"
# How many ranked blocks the similarity and tags modes look through for one the caller may run.
SEARCH_LIMIT = 20
# How many of them the tags and similarity modes check the caller may run: the block chosen and the runner-up
# the route names (the plan mode checks all its candidates: the planner model chooses among them).
CHOSEN_AND_RUNNER_UP = 2
MAX_HEADER_REASON = 160
# Backends that honour a json_schema response_format (llama.cpp as a grammar; OpenAI-compatible servers).
JSON_SCHEMA_BACKENDS = frozenset({"llamacpp", "openai", "sglang"})

# Given the planner block, the function that asks it (the gateway runs it like any chat).
AskFor = Callable[[Block], Ask]


class BadAutoModel(ValueError):
    """`auto:` with no tag."""


class NoFittingModel(Exception):
    def __init__(self, message: str, *, mode: str, considered: list[dict[str, Any]]):
        super().__init__(message)
        self.message = message
        self.mode = mode
        self.considered = considered


def is_auto(model: str) -> bool:
    return model == AUTO or model.startswith(AUTO_PREFIX)


def auto_tag(model: str) -> str | None:
    if not model.startswith(AUTO_PREFIX):
        return None
    tag = model[len(AUTO_PREFIX):].strip()
    if not tag:
        raise BadAutoModel("'auto:' needs a tag after the colon, e.g. 'auto:translation'")
    return tag


def _header_text(text: str, limit: int = MAX_HEADER_REASON) -> str:
    """Printable ASCII (header values are latin-1 at best), quotes made single, at most `limit` chars."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    folded = "".join(c if c.isprintable() else " " for c in folded).replace('"', "'").replace("\\", "/")
    folded = " ".join(folded.split())
    return folded if len(folded) <= limit else folded[:limit - 3] + "..."


@dataclass(frozen=True)
class Route:
    """How `block` was chosen: `mode`, the ranking's `policy` and `score`, the `runner_up`, the planner's
    `reason` and `source` (planner or fallback); `default`: nothing fitted and the default block runs."""

    block: Block
    model: str
    mode: str
    policy: str | None = None
    score: float | None = None
    runner_up: str | None = None
    runner_up_score: float | None = None
    reason: str | None = None
    planner: str | None = None
    source: str | None = None
    default: bool = False
    considered: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def header(self) -> str:
        parts = [f"mode={self.mode}"]
        if self.default:
            parts.append("default-block")
        if self.policy:
            parts.append(f"policy={self.policy}")
        if self.score is not None:
            parts.append(f"score={self.score:.4f}")
        if self.runner_up is not None:
            score = f" ({self.runner_up_score:.4f})" if self.runner_up_score is not None else ""
            parts.append(f"runner-up={self.runner_up}{score}")
        if self.planner:
            parts.append(f"planner={self.planner}")
        if self.source:
            parts.append(f"source={self.source}")
        if self.reason:
            parts.append(f'reason="{_header_text(self.reason)}"')
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "mode": self.mode, "policy": self.policy, "score": self.score,
                "runnerUp": self.runner_up, "runnerUpScore": self.runner_up_score, "reason": self.reason,
                "planner": self.planner, "source": self.source, "defaultBlock": self.default}


def _in_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    def run(**kwargs: Any) -> Any:
        close_old_connections()
        return function(**kwargs)

    return in_db_thread(run)


_tag_ranking = _in_thread(tag_ranking)
_similar_blocks = _in_thread(similar_blocks)


def supports_json_schema(block: Block) -> bool:
    return block.backend_type in JSON_SCHEMA_BACKENDS


class _Router:
    """One routing decision (kept as an object so each step reads the same request and config)."""

    def __init__(self, *, principal: Principal, request: ChatRequest, prompt_tokens: int, ask_for: AskFor,
                 config: PlannerConfig):
        self.principal = principal
        self.request = request
        self.prompt_tokens = prompt_tokens
        self.ask_for = ask_for
        self.config = config
        self.tag = auto_tag(request.model)
        self.task = task_from_request(request, tag=self.tag)
        self.considered: list[dict[str, Any]] = []

    def reference(self, block: Block) -> str:
        return block_reference(block, organization=self.principal.organization)

    async def usable(self, block: Block) -> bool:
        return await usable(self.principal, block, request=self.request, prompt_tokens=self.prompt_tokens)

    async def usable_hits(self, hits: list[Hit], *, enough: int | None = None) -> list[Hit]:
        """The hits the caller may run, in order; with `enough`, only until that many are found (each check
        is a database round trip: `auto` in similarity mode needs the chosen block and its runner-up, not
        all SEARCH_LIMIT of them). `considered` lists the hits checked."""
        kept = []
        for hit in hits:
            if enough is not None and len(kept) >= enough:
                break
            ok = await self.usable(hit.block)
            self.considered.append({"id": self.reference(hit.block), "score": hit.score, "parts": hit.parts,
                                    "usable": ok})
            if ok:
                kept.append(hit)
        return kept

    def chosen(self, hits: list[Hit], index: int, **how: Any) -> Route:
        hit = hits[index]
        others = [h for i, h in enumerate(hits) if i != index]
        runner_up = others[0] if others else None
        return Route(block=hit.block, model=self.reference(hit.block), score=hit.score,
                     runner_up=self.reference(runner_up.block) if runner_up else None,
                     runner_up_score=runner_up.score if runner_up else None,
                     considered=tuple(self.considered), **how)

    async def abstain(self, mode: str, why: str) -> Route:
        default = self.config.default_block
        if default is not None and await self.usable(default):
            return Route(block=default, model=self.reference(default), mode=mode, default=True,
                         reason=f"{why}; the organization's default block runs", considered=tuple(self.considered))
        raise NoFittingModel(f"No model fits this conversation ({why}), and the organization has no default "
                             "block to run instead. Name a model, or set a default block (PUT /api/planner/config).",
                             mode=mode, considered=list(self.considered))

    async def route(self) -> Route:
        mode = self.config.mode
        if mode == PlannerConfig.HARDCODED:
            return await self.hardcoded()
        if mode == PlannerConfig.TAGS:
            hits = await self.usable_hits(await _tag_ranking(principal=self.principal, text=self.task.text,
                                                             kind=Block.LLM, tag=self.tag), enough=CHOSEN_AND_RUNNER_UP)
            if not hits:
                return await self.abstain(mode, "no block's tags are named in the conversation")
            return self.chosen(hits, 0, mode=mode, policy="tags")
        limit = self.config.candidates if mode == PlannerConfig.PLAN else SEARCH_LIMIT
        hits = await self.usable_hits(await _similar_blocks(principal=self.principal, task=self.task.text,
                                                            kind=Block.LLM, tag=self.tag, limit=limit),
                                      enough=None if mode == PlannerConfig.PLAN else CHOSEN_AND_RUNNER_UP)
        if mode == PlannerConfig.PLAN:
            return await self.plan(hits)
        if not hits or not fits(hits[0], self.config.min_score):
            return await self.abstain(mode, self.below_threshold(hits))
        return self.chosen(hits, 0, mode=mode, policy=DEFAULT_POLICY)

    def below_threshold(self, hits: list[Hit]) -> str:
        if not hits:
            return "no block the caller may run matched"
        return f"the best block scored {hits[0].score:.4f}, under {min_score(self.config.min_score):g}"

    async def hardcoded(self) -> Route:
        block = self.config.default_block
        if block is None or not await self.usable(block):
            raise NoFittingModel("The organization's hard-coded block cannot be used by this caller now.",
                                 mode=PlannerConfig.HARDCODED, considered=[])
        return Route(block=block, model=self.reference(block), mode=PlannerConfig.HARDCODED,
                     reason="the organization's hard-coded block")

    async def plan(self, hits: list[Hit]) -> Route:
        mode = PlannerConfig.PLAN
        if not hits:
            return await self.abstain(mode, "the search found no block the caller may run")
        fallback = [self.reference(hits[0].block)] if fits(hits[0], self.config.min_score) else []
        planner = self.config.planner_block
        if planner is None or not await usable(self.principal, planner):
            selection = Selection(id=fallback[0] if fallback else None, reason="the ranking's first candidate",
                                  source="fallback", attempts=0, error="the planner block cannot be used")
        else:
            selector = LLMSelectorPlanner(self.ask_for(planner), json_schema=supports_json_schema(planner))
            selection = await selector.select(self.task, [searchable(h.block, self.principal) for h in hits],
                                              fallback=fallback)
        planner_name = self.reference(planner) if planner is not None else None
        if selection.id is None:
            why = (f"the planner {planner_name} found none fits: {selection.reason}" if selection.source == "planner"
                   else f"{selection.error or 'no planner'}, and {self.below_threshold(hits)}")
            return await self.abstain(mode, why)
        index = next(i for i, h in enumerate(hits) if self.reference(h.block) == selection.id)
        reason = selection.reason if selection.source == "planner" else f"{selection.error}; {selection.reason}"
        return self.chosen(hits, index, mode=mode, policy=DEFAULT_POLICY, planner=planner_name,
                           source=selection.source, reason=reason)


async def route_conversation(*, principal: Principal, request: ChatRequest, prompt_tokens: int,
                             ask_for: AskFor) -> Route:
    """The block `request.model` ("auto" or "auto:<tag>") runs on. Raises BadAutoModel, NoFittingModel."""
    config = await planner_config_cached(principal.organization)
    return await _Router(principal=principal, request=request, prompt_tokens=prompt_tokens, ask_for=ask_for,
                         config=config).route()
