"""The seed's LLMSelectorPlanner and OptimizerSelector: ask a planner model to pick one block for a task.

The prompt carries the candidates' searchable representation (id, description, tags, protocols), the task,
its metadata and the descriptions of the schemas the answer must follow. The planner is asked for one JSON
object `{"id": ..., "reason": ...}` at temperature 0, with a `json_schema` response format whose `id` is an
enum of the candidate ids (the built-in llama.cpp model turns it into a grammar, so it cannot answer
anything else). A reply is accepted only if, once code fences are stripped, it is that object and its id is
a candidate's (or "none": no candidate fits, an abstention). A refused reply is sent back with the reason
once; a second refusal, or a planner that cannot be reached, falls back to the ranking the caller passed
(the similarity or tag ranking the candidates came from).

Nothing here touches the database or the network: `ask` does (the gateway's, in inference/gateway/pipeline.py,
runs the planner block through the same admission, quotas and metrics as any chat).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# ask(messages, response_format or None) -> the planner's reply text; raises PlannerUnavailable.
Ask = Callable[[list[dict[str, Any]], dict[str, Any] | None], Awaitable[str]]

ABSTAIN = "none"
MAX_DESCRIPTION_CHARS = 400
MAX_TASK_CHARS = 4000
MAX_REASON_CHARS = 200
_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


class PlannerUnavailable(Exception):
    """The planner block could not answer (refused, failed, timed out): the selection falls back."""


class PlannerReplyError(ValueError):
    """The planner answered something that is not a valid choice; the message is sent back to it once."""


@dataclass(frozen=True)
class Task:
    """What a block is chosen for: the task text, facts about it, and the schemas its answer must follow."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # Descriptions of what the answer must look like: {"name", "description", "schema"} (a response
    # format's JSON schema, a tool's parameters).
    schemas: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Selection:
    """`id` None: no candidate fits (the planner said "none", or the fallback ranking was empty).
    `source`: "planner" when the planner's answer was used, "fallback" when the ranking's first was."""

    id: str | None
    reason: str
    source: str
    attempts: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "reason": self.reason, "source": self.source, "attempts": self.attempts,
                "error": self.error}


def strip_code_fences(text: str) -> str:
    """The content of the first fenced block (```json ... ```), else the text as it is, trimmed."""
    fenced = _FENCE.search(text)
    return (fenced.group(1) if fenced else text).strip()


def _json_object(text: str) -> dict[str, Any]:
    body = strip_code_fences(text)
    try:
        value = json.loads(body)
    except ValueError:
        # Prose around the object ("Sure! {...}"): the outermost braces, once.
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            raise PlannerReplyError("the answer is not a JSON object") from None
        try:
            value = json.loads(body[start:end + 1])
        except ValueError as exc:
            raise PlannerReplyError(f"the answer is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise PlannerReplyError("the answer must be one JSON object, not a list or a value")
    return value


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


class LLMSelectorPlanner:
    """Chooses one LLM block for a task by asking a planner model (see the module docstring)."""

    noun = "model"
    purpose = "answers the task best"

    def __init__(self, ask: Ask, *, json_schema: bool = True):
        """`json_schema`: send the response_format (off for a backend that would refuse or ignore it)."""
        self.ask = ask
        self.json_schema = json_schema

    # The prompt.
    def representation(self, candidate: dict[str, Any]) -> dict[str, Any]:
        """The seed's searchable representation, with the description shortened for the prompt."""
        return {
            "id": candidate["id"],
            "description": _shorten(candidate.get("description") or "", MAX_DESCRIPTION_CHARS),
            "tags": list(candidate.get("tags") or []),
            "inputProtocols": list(candidate.get("inputProtocols") or []),
            "outputProtocols": list(candidate.get("outputProtocols") or []),
        }

    def build_prompt(self, task: Task, candidates: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
        system = (
            f"You choose the one {self.noun} that {self.purpose}, from a list of candidates. Answer with one JSON "
            'object and nothing else: {"id": "<a candidate id>", "reason": "<one short sentence>"}. '
            f'Use "{ABSTAIN}" as the id when no candidate fits the task.'
        )
        lines = ["Candidates (one JSON object per line):"]
        lines += [json.dumps(self.representation(c), ensure_ascii=False) for c in candidates]
        lines += ["", f"Task: {_shorten(task.text, MAX_TASK_CHARS)}"]
        if task.metadata:
            lines.append(f"Task metadata: {json.dumps(task.metadata, ensure_ascii=False, sort_keys=True)}")
        if task.schemas:
            lines.append("The answer must follow:")
            for schema in task.schemas:
                described = f"- {schema.get('name') or 'schema'}"
                if schema.get("description"):
                    described += f": {_shorten(schema['description'], MAX_DESCRIPTION_CHARS)}"
                if schema.get("schema") is not None:
                    described += f" (JSON schema: {_shorten(json.dumps(schema['schema']), MAX_DESCRIPTION_CHARS)})"
                lines.append(described)
        lines += ["", f"Which candidate id? Answer with the JSON object only ({ABSTAIN!r} if none fits)."]
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]

    def response_format(self, candidates: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        if not self.json_schema:
            return None
        ids = [c["id"] for c in candidates] + [ABSTAIN]
        schema = {
            "type": "object",
            # id first: a grammar keeps this order, so the choice is made before the reason is written.
            "properties": {"id": {"type": "string", "enum": ids},
                           "reason": {"type": "string", "maxLength": MAX_REASON_CHARS}},
            "required": ["id", "reason"],
            "additionalProperties": False,
        }
        return {"type": "json_schema", "json_schema": {"name": "block_choice", "strict": True, "schema": schema}}

    # The answer.
    def parse(self, reply: str, candidates: Sequence[dict[str, Any]]) -> tuple[str | None, str]:
        """(the chosen id, or None for "none"; the reason). Raises PlannerReplyError."""
        answer = _json_object(reply)
        chosen = answer.get("id")
        if not isinstance(chosen, str) or not chosen.strip():
            raise PlannerReplyError('the object has no "id" string')
        chosen = chosen.strip()
        reason = answer.get("reason")
        reason = _shorten(reason, MAX_REASON_CHARS) if isinstance(reason, str) else ""
        if chosen.lower() == ABSTAIN:
            return None, reason
        ids = [c["id"] for c in candidates]
        if chosen not in ids:
            raise PlannerReplyError(f"{chosen!r} is not one of the candidate ids ({', '.join(ids)})")
        return chosen, reason

    async def select(self, task: Task, candidates: Sequence[dict[str, Any]], *,
                     fallback: Sequence[str] = ()) -> Selection:
        """`candidates`: searchable representations (their `id` is what the planner must answer);
        `fallback`: candidate ids in the order of the ranking to fall back on."""
        if not candidates:
            return Selection(id=None, reason="no candidates", source="fallback", attempts=0)
        messages = self.build_prompt(task, candidates)
        response_format = self.response_format(candidates)
        error: str | None = None
        attempts = 0
        for _ in range(2):
            attempts += 1
            try:
                reply = await self.ask(messages, response_format)
            except PlannerUnavailable as exc:
                error = f"the planner could not answer: {exc}"
                break
            try:
                chosen, reason = self.parse(reply, candidates)
            except PlannerReplyError as exc:
                error = f"refused the planner's answer: {exc}"
                # Once more, with the refusal: a small model often fixes a fence or a misspelt id.
                messages = [*messages, {"role": "assistant", "content": reply[:2000]},
                            {"role": "user", "content": f"That answer was refused: {exc}. Answer again with "
                                                        "one JSON object whose id is a candidate id."}]
                continue
            return Selection(id=chosen, reason=reason, source="planner", attempts=attempts)
        first = next(iter(fallback), None)
        reason = ("the ranking's first candidate" if first is not None else "the ranking had no candidate")
        return Selection(id=first, reason=reason, source="fallback", attempts=attempts, error=error)


class OptimizerSelector(LLMSelectorPlanner):
    """The same over optimizer blocks (they rewrite, compress, check or route a task rather than answer it)."""

    noun = "optimizer"
    purpose = "improves the handling of the task best (optimizers rewrite, compress, verify or route work)"
