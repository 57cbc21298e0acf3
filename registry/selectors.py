"""Reads from the registry. Every read of blocks on behalf of a caller starts from
`blocks_visible_to`, so tenancy has one definition."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Case, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When

from registry.models import ApiKey, Block, BlockGrant, Organization
from registry.query import compile_query


def blocks_visible_to(organization: Organization) -> QuerySet[Block]:
    """The organization's own blocks, every public block, and blocks granted to it."""
    granted = BlockGrant.objects.filter(block=OuterRef("pk"), organization=organization)
    return (
        Block.objects.select_related("organization")
        .filter(Q(organization=organization) | Q(visibility=Block.PUBLIC) | Exists(granted))
        # Ids repeat across organizations: pk breaks ties so offset pages never overlap.
        .order_by("block_id", "pk")
    )


# Every kind /v1/chat/completions runs: an optimizer block runs through its backend exactly as an
# LLM block does (the seed's KnownLLMOptimizers.run_ai_inference calls it so).
RUNNABLE_KINDS: tuple[str, ...] = (Block.LLM, Block.OPTIMIZER)


def block_is_visible_to(block: Block, organization: Organization) -> bool:
    """Whether `organization` may see `block` now: its own, public, or granted (one query at most)."""
    if block.organization_id == organization.pk or block.visibility == Block.PUBLIC:
        return True
    return BlockGrant.objects.filter(block=block, organization=organization).exists()


def blocks_callable(organization: Organization, *, kinds: tuple[str, ...] = RUNNABLE_KINDS) -> QuerySet[Block]:
    """Enabled blocks of `kinds` the organization may run, owner loaded (for /v1/models' owned_by)."""
    return blocks_visible_to(organization).filter(kind__in=kinds, enabled=True).order_by("block_id")


QUALIFIER = "/"


def _org_id(slug: str) -> Subquery:
    return Subquery(Organization.objects.filter(slug=slug).values("id")[:1])


def block_resolve(*, organization: Organization, reference: str, queryset: QuerySet[Block] | None = None,
                  names: bool = True, prefer_kind: str | None = None) -> Block | None:
    """The block that `reference` names for `organization`, or None. The one naming rule (issue 8):

    1. the caller's own block by id, then by name (lowest id on a tie);
    2. "<org-slug>/<block-id>": that organization's block, if the caller may see it (own,
       public or granted): the only way to reach another tenant's block;
    3. the platform organization's *public* blocks by id, then by name, below the caller's own;
    4. nothing else: no foreign name or plain id, public or granted, ever matches.

    A qualified reference can only be an id (ids have no "/"), but a name may hold one
    ("meta-llama/Llama-3"), so the caller's own names rank above it: a tenant whose slug
    happens to prefix a name never takes over what the caller already calls that name.
    `queryset` narrows the candidates (enabled LLMs for the gateway); `names=False` matches ids
    only (fallbacks, the REST API's /blocks/<id>, rules). `prefer_kind` breaks a tie *within* one rank
    (an own LLM and an own optimizer of the same name): the kind never lifts a block above a better
    rank, so no foreign block outranks a name the caller gave one of its own. One indexed query.
    """
    if not reference:
        return None
    candidates = blocks_visible_to(organization) if queryset is None else queryset
    # Organizations by a scalar subquery, not a join on slug: the (organization, block_id) and
    # name indexes then serve every branch (a join made PostgreSQL scan every public block).
    platform = Q(organization_id=_org_id(settings.SWITCHBOARD_PLATFORM_ORG), visibility=Block.PUBLIC)
    own = Q(organization=organization)
    ranks = [(own & Q(block_id=reference), 0)]
    if names:
        ranks.append((own & Q(name=reference), 1))
    slug, sep, block_id = reference.partition(QUALIFIER)
    if sep and slug and block_id:
        ranks.append((Q(organization_id=_org_id(slug), block_id=block_id), 2))
    ranks.append((platform & Q(block_id=reference), 3))
    if names:
        ranks.append((platform & Q(name=reference), 4))
    match = Q()
    for condition, _ in ranks:
        match |= condition
    return (
        candidates.filter(match)
        .annotate(name_rank=Case(*(When(condition, then=Value(rank)) for condition, rank in ranks),
                                 output_field=IntegerField()))
        .order_by("name_rank", *_kind_order(prefer_kind), "block_id")
        .first()
    )


def _kind_order(prefer_kind: str | None) -> list[Any]:
    if prefer_kind is None:
        return []
    return [Case(When(kind=prefer_kind, then=Value(0)), default=Value(1), output_field=IntegerField())]


def block_reference(block: Block, *, organization: Organization) -> str:
    """How `organization` names `block` in replies: its plain id for its own and the platform's
    public blocks, the qualified id for anyone else's (a plain id would name another block)."""
    if block.organization_id == organization.pk:
        return block.block_id
    if block.visibility == Block.PUBLIC and block.organization.slug == settings.SWITCHBOARD_PLATFORM_ORG:
        return block.block_id
    return block.qualified_id


def block_key_names(block: Block, *, organization: Organization) -> tuple[str, ...]:
    """What an API key's allowed_models may list to allow `block`: the qualified id always, the
    plain id only where the plain id reaches it (the caller's own and the platform's public blocks)."""
    reference = block_reference(block, organization=organization)
    return (block.qualified_id,) if reference == block.qualified_id else (block.block_id, block.qualified_id)


def block_get_visible(*, organization: Organization, block_id: str) -> Block | None:
    """The block a plain id (own, then the platform's) or a qualified id names for the caller.

    None both when the block does not exist and when the caller may not see it.
    """
    return block_resolve(organization=organization, reference=block_id, names=False)


def blocks_named_anywhere(reference: str) -> QuerySet[Block]:
    """For the operator's own tools (in-process dispatch, worker --model), which act for no
    organization: a qualified id names one block; a plain id may name one per organization, and
    the caller must refuse to guess when it names several."""
    slug, sep, block_id = reference.partition(QUALIFIER)
    if sep:
        return Block.objects.filter(organization__slug=slug, block_id=block_id)
    return Block.objects.filter(block_id=reference)


def block_get_owned(*, organization: Organization, block_id: str) -> Block | None:
    return Block.objects.select_related("organization").filter(
        organization=organization, block_id=block_id
    ).first()


def blocks_list(*, organization: Organization, kind: str | None = None) -> QuerySet[Block]:
    qs = blocks_visible_to(organization)
    return qs.filter(kind=kind) if kind else qs


def blocks_query(*, organization: Organization, payload: Any) -> QuerySet[Block]:
    """Blocks matching a filter payload (any accepted shape). Raises QueryError."""
    q, kind = compile_query(payload)
    return blocks_list(organization=organization, kind=kind).filter(q)


def blocks_allowed_to_key(queryset: QuerySet[Block], *, organization: Organization, api_key: ApiKey) -> QuerySet[Block]:
    """`queryset` narrowed, in SQL, to the blocks the key's allowed_models lists (all of them for an
    empty list), by the names block_key_names gives: the qualified id always, the plain id only for
    the organization's own and the platform's public blocks."""
    names = [name for name in (api_key.allowed_models or []) if isinstance(name, str)]
    if not api_key.allowed_models:
        return queryset
    plain = [name for name in names if QUALIFIER not in name]
    allowed = Q(pk__in=[])
    if plain:
        platform = Q(organization_id=_org_id(settings.SWITCHBOARD_PLATFORM_ORG), visibility=Block.PUBLIC)
        allowed |= Q(block_id__in=plain) & (Q(organization=organization) | platform)
    for name in names:
        slug, sep, block_id = name.partition(QUALIFIER)
        if sep and slug and block_id:
            allowed |= Q(organization__slug=slug, block_id=block_id)
    return queryset.filter(allowed)
