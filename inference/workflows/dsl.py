"""The workflow document: parsing (JSON, or YAML through yaml.safe_load) and validation that names
every error at once.

    {"name": "triage", "version": "1", "description": "...",
     "inputs": {"ticket": {"type": "string"}},
     "nodes": [{"id": "summary", "type": "block", "block": "summarizer",
                "prompt": "Summarize: {{ input.ticket }}", "params": {"temperature": 0}}, ...],
     "output": "{{ nodes.summary.output }}"}

Node types: block, optimizer, condition, map, approval (docs/workflows.md has every field). `planner`
is recognised and refused until the planner has an API a workflow can call.

`structure_errors` needs no database; `reference_errors` checks the names against the caller's
organization: blocks by the gateway's naming rule (registry.selectors.block_resolve) and the API key's
allowed models (the seed's DSL Action Verifier), approvers against the organization's members.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from inference.agents.selectors import agent_get
from inference.workflows import graph as dag
from inference.workflows import templates
from registry.models import Block, Membership, Organization
from registry.principal import Principal
from registry.selectors import block_resolve, blocks_callable

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_NODES = 200
MAP_MAX_ITEMS = 100
MAP_MAX_CONCURRENCY = 16
NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NODE_TYPES = ("block", "optimizer", "condition", "map", "approval", "agent", "planner")
CALL_TYPES = ("block", "optimizer", "map")
INPUT_TYPES = {"string": str, "number": (int, float), "integer": int, "boolean": bool, "array": list,
               "object": dict, "any": object}
OPERATORS = ("==", "!=", ">", ">=", "<", "<=", "contains", "in", "truthy")
ROLES = (Membership.OWNER, Membership.MEMBER)
ON_TIMEOUT = ("reject", "approve")
ROLES_ALLOWED = ("system", "user", "assistant")
DURATION = re.compile(r"^(\d{1,9})\s*([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DEADLINE_S = 366 * 86400
PARAMS = {"temperature": (int, float), "top_p": (int, float), "max_tokens": int, "stop": (str, list),
          "seed": int, "presence_penalty": (int, float), "frequency_penalty": (int, float)}
KNOWN_FIELDS = {
    "block": {"id", "type", "after", "description", "block", "prompt", "system", "messages", "params", "output_format"},
    "condition": {"id", "type", "after", "description", "if", "then", "else"},
    "approval": {"id", "type", "after", "description", "approvers", "deadline", "on_timeout", "schema", "review"},
    "planner": {"id", "type", "after", "description"},
    # A stored agent (inference/agents) run with `input` (templates of its signature's input fields).
    "agent": {"id", "type", "after", "description", "agent", "input", "model"},
}
KNOWN_FIELDS["map"] = KNOWN_FIELDS["block"] | {"over", "max_items", "concurrency"}
# A block call may keep a conversation in the context window store (`session`, a template naming its
# session_id), as a chat request that names one does; a map's many calls would interleave in one session.
KNOWN_FIELDS["block"] = KNOWN_FIELDS["block"] | {"session"}
KNOWN_FIELDS["optimizer"] = KNOWN_FIELDS["block"]


class DocumentError(ValueError):
    """`parsed`: the text was a document (JSON or YAML) but not a valid workflow. The API answers 422 then
    (well-formed input breaking rules no JSON Schema states: the graph, the templates, the blocks), 400 when
    the text is no document at all."""

    def __init__(self, errors: list[str], *, parsed: bool = False):
        super().__init__("; ".join(errors))
        self.errors = errors
        self.parsed = parsed


def parse(raw: Any) -> dict[str, Any]:
    """A document from a JSON object, or from JSON or YAML text (YAML's safe loader: no tags, no objects)."""
    if isinstance(raw, str):
        if len(raw.encode()) > MAX_DOCUMENT_BYTES:
            raise DocumentError([f"the document is larger than {MAX_DOCUMENT_BYTES} bytes"])
        try:
            raw = yaml.safe_load(raw)  # YAML is a superset of JSON: one loader reads both
        except yaml.YAMLError as exc:
            raise DocumentError([f"the document is neither JSON nor YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise DocumentError(["the document must be an object with 'name', 'version' and 'nodes'"])
    if len(json.dumps(raw, default=str).encode()) > MAX_DOCUMENT_BYTES:
        raise DocumentError([f"the document is larger than {MAX_DOCUMENT_BYTES} bytes"])
    try:
        # YAML may produce dates and other non-JSON values: the stored document is plain JSON.
        return json.loads(json.dumps(raw, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DocumentError([f"the document holds a value JSON cannot store: {exc}"]) from None


def parse_duration(value: Any) -> int | None:
    """Seconds from 3600 or "90s", "15m", "2h", "1d"; None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (m := DURATION.match(value.strip())):
        seconds = int(m.group(1)) * UNITS[m.group(2)]
    else:
        return None
    return seconds if 0 < seconds <= MAX_DEADLINE_S else None


def _approvers_errors(where: str, value: Any) -> list[str]:
    if not isinstance(value, dict) or set(value) - {"role", "users"} or not value:
        return [f"{where}: write {{\"role\": \"owner\" | \"member\"}} or {{\"users\": [\"<username>\", ...]}}"]
    errors = []
    if "role" in value and value["role"] not in ROLES:
        errors.append(f"{where}.role: '{value['role']}' is not a role (owner or member)")
    users = value.get("users")
    if "users" in value and (not isinstance(users, list) or not users
                             or not all(isinstance(u, str) and u for u in users)):
        errors.append(f"{where}.users: a non-empty list of usernames")
    return errors


def _on_timeout_errors(where: str, value: Any, *, nested: bool = False) -> list[str]:
    if value in ON_TIMEOUT:
        return []
    if isinstance(value, dict) and set(value) == {"default"}:
        return []
    if not nested and isinstance(value, dict) and "escalate" in value:
        errors = [] if set(value) <= {"escalate", "deadline", "then"} else [
            f"{where}: an escalation has 'escalate', 'deadline' and optionally 'then'"]
        errors += _approvers_errors(f"{where}.escalate", value["escalate"])
        if parse_duration(value.get("deadline")) is None:
            errors.append(f"{where}.deadline: an escalation needs a deadline (seconds or '15m', '2h', '1d')")
        if "then" in value:
            errors += _on_timeout_errors(f"{where}.then", value["then"], nested=True)
        return errors
    choices = "'reject', 'approve', {\"default\": <output>}" + ("" if nested else " or {\"escalate\": ...}")
    return [f"{where}: on_timeout is {choices}"]


def _call_errors(where: str, node: dict[str, Any]) -> list[str]:
    errors = []
    if not isinstance(node.get("block"), str) or not node.get("block"):
        errors.append(f"{where}.block: the block to call (its id, name, or '<org-slug>/<block-id>')")
    has_prompt, has_messages = "prompt" in node, "messages" in node
    if has_prompt == has_messages:
        errors.append(f"{where}: give exactly one of 'prompt' (a template) or 'messages'")
    if has_prompt and not isinstance(node["prompt"], str):
        errors.append(f"{where}.prompt: a string template")
    if "system" in node and not isinstance(node["system"], str):
        errors.append(f"{where}.system: a string template")
    if "session" in node and (not isinstance(node["session"], str) or not node["session"].strip()):
        errors.append(f"{where}.session: a string template naming a context window session")
    if has_messages:
        messages = node["messages"]
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and m.get("role") in ROLES_ALLOWED and isinstance(m.get("content"), str)
                and set(m) <= {"role", "content"} for m in messages):
            errors.append(f"{where}.messages: a non-empty list of {{\"role\": system|user|assistant, "
                          "\"content\": <template>}}")
    params = node.get("params", {})
    if not isinstance(params, dict):
        errors.append(f"{where}.params: an object of sampling parameters")
    else:
        for name, value in params.items():
            expected = PARAMS.get(name)
            if expected is None:
                errors.append(f"{where}.params.{name}: unknown parameter (known: {', '.join(PARAMS)})")
            elif isinstance(value, bool) or not isinstance(value, expected):
                errors.append(f"{where}.params.{name}: mistyped ({type(value).__name__})")
    if node.get("output_format", "text") not in ("text", "json"):
        errors.append(f"{where}.output_format: 'text' or 'json'")
    return errors


def _map_errors(where: str, node: dict[str, Any]) -> list[str]:
    errors = []
    over = node.get("over")
    if not isinstance(over, str) or not templates.WHOLE.match(over):
        errors.append(f"{where}.over: one placeholder naming a list, e.g. '{{{{ input.items }}}}'")
    for name, limit, default in (("max_items", MAP_MAX_ITEMS, MAP_MAX_ITEMS), ("concurrency", MAP_MAX_CONCURRENCY, 4)):
        value = node.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            errors.append(f"{where}.{name}: an integer from 1 to {limit}")
    return errors


def _condition_errors(where: str, node: dict[str, Any]) -> list[str]:
    errors = []
    test = node.get("if")
    if not isinstance(test, dict) or "left" not in test or test.get("op") not in OPERATORS:
        errors.append(f"{where}.if: {{\"left\": <template>, \"op\": {' | '.join(OPERATORS)}, \"right\": <value>}}")
    elif test["op"] != "truthy" and "right" not in test:
        errors.append(f"{where}.if.right: operator '{test['op']}' compares with 'right'")
    for branch in ("then", "else"):
        value = node.get(branch, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors.append(f"{where}.{branch}: a list of node ids")
    if not node.get("then") and not node.get("else"):
        errors.append(f"{where}: a condition needs 'then' or 'else' (the nodes it guards)")
    return errors


def _approval_errors(where: str, node: dict[str, Any]) -> list[str]:
    errors = _approvers_errors(f"{where}.approvers", node.get("approvers"))
    if "deadline" in node and parse_duration(node["deadline"]) is None:
        errors.append(f"{where}.deadline: seconds (1 to {MAX_DEADLINE_S}) or '90s', '15m', '2h', '1d'")
    if "on_timeout" in node:
        errors += _on_timeout_errors(f"{where}.on_timeout", node["on_timeout"])
        if "deadline" not in node:
            errors.append(f"{where}.on_timeout: there is no deadline to time out")
    if "schema" in node:
        try:
            Draft202012Validator.check_schema(node["schema"])
        except SchemaError as exc:
            errors.append(f"{where}.schema: not a JSON schema: {exc.message}")
    return errors


def _inputs_errors(inputs: Any) -> list[str]:
    if not isinstance(inputs, dict):
        return ["inputs: an object of {\"<name>\": {\"type\": ..., \"required\": true|false}}"]
    errors = []
    for name, spec in inputs.items():
        if not templates.SEGMENT.match(name):
            errors.append(f"inputs.{name}: names are letters, digits, '_' and '-'")
        if not isinstance(spec, dict) or spec.get("type", "any") not in INPUT_TYPES or \
                not isinstance(spec.get("required", True), bool):
            errors.append(f"inputs.{name}: {{\"type\": {' | '.join(INPUT_TYPES)}, \"required\": true|false}}")
    return errors


def _template_errors(where: str, value: Any, *, graph: dag.Graph, node_id: str | None, inputs: dict | None,
                     in_map: bool) -> list[str]:
    try:
        refs = templates.references(value)
    except templates.TemplateError as exc:
        return [f"{where}: {exc}"]
    errors = []
    upstream = graph.ancestors(node_id) if node_id is not None else set(graph.order)
    for ref in refs:
        if ref.root == "input" and inputs is not None and ref.keys[0] not in inputs:
            errors.append(f"{where}: '{{{{ {ref} }}}}' names an input the document does not declare")
        elif ref.root == "nodes" and ref.node_id not in graph.order:
            errors.append(f"{where}: '{{{{ {ref} }}}}' names an unknown node '{ref.node_id}'")
        elif ref.root == "nodes" and ref.node_id not in upstream:
            errors.append(f"{where}: '{{{{ {ref} }}}}' names node '{ref.node_id}', which is not upstream of "
                          "this node (add it to 'after')")
        elif ref.root in ("item", "index") and not in_map:
            errors.append(f"{where}: '{{{{ {ref} }}}}' exists only inside a map node")
    return errors


def _node_templates(node: dict[str, Any]) -> dict[str, Any]:
    fields = ("prompt", "system", "messages", "review", "session", "input")
    found = {name: node[name] for name in fields if name in node}
    if isinstance(node.get("if"), dict):
        found["if"] = {k: v for k, v in node["if"].items() if k in ("left", "right")}
    if "over" in node:
        found["over"] = node["over"]
    return found


def _agent_errors(where: str, node: dict[str, Any]) -> list[str]:
    errors = []
    if not isinstance(node.get("agent"), str) or not node["agent"]:
        errors.append(f"{where}.agent: required (the name of one of this organization's agents)")
    if not isinstance(node.get("input", {}), dict):
        errors.append(f"{where}.input: an object of the agent's input fields (values may be templates)")
    if "model" in node and (not isinstance(node["model"], str) or not node["model"]):
        errors.append(f"{where}.model: a block (instead of the agent's default brain)")
    return errors


def structure_errors(document: dict[str, Any]) -> list[str]:
    """Everything wrong with the document's form, graph and templates (no database)."""
    errors: list[str] = []
    for name in ("name", "version"):
        value = document.get(name)
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            errors.append(f"{name}: required (a non-empty string)")
        elif len(str(value)) > (200 if name == "name" else 100):
            errors.append(f"{name}: too long")
    if "description" in document and not isinstance(document["description"], str):
        errors.append("description: a string")
    unknown = set(document) - {"name", "version", "description", "inputs", "nodes", "output"}
    if unknown:
        errors.append(f"unknown top-level field(s): {', '.join(sorted(unknown))}")
    inputs = document.get("inputs")
    if inputs is not None:
        errors += _inputs_errors(inputs)
        inputs = inputs if isinstance(inputs, dict) else None
    nodes = document.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return errors + ["nodes: a non-empty list of nodes"]
    if len(nodes) > MAX_NODES:
        return errors + [f"nodes: at most {MAX_NODES} nodes"]

    good: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, node in enumerate(nodes):
        where = f"nodes[{index}]"
        if not isinstance(node, dict):
            errors.append(f"{where}: a node is an object")
            continue
        node_id = node.get("id")
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            errors.append(f"{where}.id: required; letters, digits, '_' and '-' (at most 64)")
            continue
        where = f"node '{node_id}'"
        if node_id in seen:
            errors.append(f"{where}: duplicate id")
            continue
        seen.add(node_id)
        good.append(node)
        node_type = node.get("type")
        if node_type not in NODE_TYPES:
            errors.append(f"{where}: unknown node type {node_type!r} (known: {', '.join(NODE_TYPES[:-1])})")
            continue
        if node_type == "planner":
            errors.append(f"{where}: planner nodes are not supported yet (the planner has no API a workflow "
                          "can call); use a block node")
            continue
        extra = set(node) - KNOWN_FIELDS[node_type]
        if extra:
            errors.append(f"{where}: unknown field(s) for a {node_type} node: {', '.join(sorted(extra))}")
        after = node.get("after", [])
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            errors.append(f"{where}.after: a list of node ids")
        if node_type in CALL_TYPES:
            errors += _call_errors(where, node)
        if node_type == "map":
            errors += _map_errors(where, node)
        elif node_type == "condition":
            errors += _condition_errors(where, node)
        elif node_type == "approval":
            errors += _approval_errors(where, node)
        elif node_type == "agent":
            errors += _agent_errors(where, node)

    ids = {n["id"] for n in good}
    for node in good:
        for field in ("after", "then", "else"):
            value = node.get(field)
            for ref in value if isinstance(value, list) else []:
                if isinstance(ref, str) and ref not in ids:
                    errors.append(f"node '{node['id']}'.{field}: unknown node '{ref}'")
                elif ref == node["id"]:
                    errors.append(f"node '{node['id']}'.{field}: a node cannot depend on itself")
        if node.get("type") == "condition" and isinstance(node.get("then"), list) and isinstance(node.get("else"), list):
            for both in sorted(set(node["then"]) & set(node["else"])):
                errors.append(f"node '{node['id']}': '{both}' is in both 'then' and 'else' (it would run either way)")

    graph = dag.build(good)
    for cycle in dag.cycles(graph):
        if len(cycle) > 2:  # [a, a] is a self-dependency, reported above
            errors.append(f"cycle: {' -> '.join(cycle)}")
    startable = set(dag.startable(graph))
    in_cycle = {n for cycle in dag.cycles(graph) for n in cycle}
    for node_id in graph.order:
        if node_id not in startable and node_id not in in_cycle:
            errors.append(f"node '{node_id}' is unreachable: it waits on a cycle and can never start")
    if not graph.roots:
        errors.append("nodes: no node can start (every node waits for another)")

    for node in good:
        for name, value in _node_templates(node).items():
            errors += _template_errors(f"node '{node['id']}'.{name}", value, graph=graph, node_id=node["id"],
                                       inputs=inputs, in_map=node.get("type") == "map" and name != "over")
    if "output" in document:
        errors += _template_errors("output", document["output"], graph=graph, node_id=None, inputs=inputs,
                                   in_map=False)
    return errors


def call_nodes(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in document.get("nodes", []) if isinstance(n, dict) and n.get("type") in CALL_TYPES]


def resolve_call_block(*, organization: Organization, node: dict[str, Any]) -> Block | None:
    """The block a call node names, by the gateway's naming rule: an optimizer node only an optimizer."""
    kinds = (Block.OPTIMIZER,) if node.get("type") == "optimizer" else (Block.LLM, Block.OPTIMIZER)
    return block_resolve(organization=organization, reference=node["block"], prefer_kind=Block.LLM,
                         queryset=blocks_callable(organization, kinds=kinds))


def reference_errors(document: dict[str, Any], *, principal: Principal) -> list[str]:
    """Blocks and approvers the caller's organization may not use (structure must be valid first)."""
    organization = principal.organization
    errors = []
    for node in call_nodes(document):
        where = f"node '{node['id']}'.block"
        block = resolve_call_block(organization=organization, node=node)
        if block is None:
            kind = "optimizer block" if node["type"] == "optimizer" else "block"
            # Missing and invisible read alike: a foreign private block must look missing.
            errors.append(f"{where}: no {kind} '{node['block']}' that this organization may use")
        elif not block.backend_type:
            errors.append(f"{where}: '{node['block']}' is a registry entry with no inference backend")
        elif not principal.allows_block(block):
            errors.append(f"{where}: this API key is not allowed to use '{node['block']}'")
    for node in document.get("nodes", []):
        if node.get("type") == "agent" and isinstance(node.get("agent"), str) \
                and agent_get(organization=organization, name=node["agent"]) is None:
            errors.append(f"node '{node['id']}'.agent: no agent '{node['agent']}' in this organization")
    usernames = set(Membership.objects.filter(organization=organization).values_list("user__username", flat=True))
    for node in document.get("nodes", []):
        if node.get("type") != "approval":
            continue
        groups = [("approvers", node.get("approvers") or {})]
        escalation = node.get("on_timeout")
        if isinstance(escalation, dict) and isinstance(escalation.get("escalate"), dict):
            groups.append(("on_timeout.escalate", escalation["escalate"]))
        for field, approvers in groups:
            for username in approvers.get("users") or []:
                if username not in usernames:
                    errors.append(f"node '{node['id']}'.{field}: '{username}' is not a member of this organization")
    return errors


def validate(raw: Any, *, principal: Principal) -> dict[str, Any]:
    """The parsed document, or DocumentError naming every problem."""
    document = parse(raw)
    errors = structure_errors(document)
    if not errors:
        errors = reference_errors(document, principal=principal)
    else:
        # Still name the bad blocks and approvers of well-formed nodes, so one upload shows everything.
        errors += _reference_errors_of_wellformed(document, principal=principal)
    if errors:
        raise DocumentError(errors, parsed=True)
    return document


def _reference_errors_of_wellformed(document: dict[str, Any], *, principal: Principal) -> list[str]:
    nodes = [n for n in document.get("nodes") or [] if isinstance(n, dict) and isinstance(n.get("id"), str)
             and (n.get("type") not in CALL_TYPES or (isinstance(n.get("block"), str) and n["block"]))
             and (n.get("type") != "approval" or not _approvers_errors("", n.get("approvers")))]
    on_timeout_ok = [n for n in nodes if n.get("type") != "approval" or "on_timeout" not in n
                     or not _on_timeout_errors("", n["on_timeout"])]
    return reference_errors({"nodes": on_timeout_ok}, principal=principal)


def check_input(document: dict[str, Any], value: Any) -> list[str]:
    """Errors in a run's input against the document's declared inputs (every one)."""
    if not isinstance(value, dict):
        return ["input: an object"]
    declared = document.get("inputs")
    if declared is None:
        return []
    errors = []
    for name, spec in sorted(declared.items()):  # stored as jsonb, whose key order is not the document's
        if name not in value:
            if spec.get("required", True):
                errors.append(f"input.{name}: required ({spec.get('type', 'any')})")
            continue
        expected = INPUT_TYPES[spec.get("type", "any")]
        got = value[name]
        if (isinstance(got, bool) and spec.get("type") in ("number", "integer")) or not isinstance(got, expected):
            errors.append(f"input.{name}: expected {spec.get('type')}, got {type(got).__name__}")
    for name in sorted(set(value) - set(declared)):
        errors.append(f"input.{name}: not an input of this workflow (known: {', '.join(sorted(declared)) or 'none'})")
    return errors
