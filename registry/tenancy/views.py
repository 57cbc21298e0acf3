"""The tenancy API: keys, members, grants, the organization's model names, policies, quotas,
usage, and the estimator. Thin views: validate, call one service, answer with the envelope.

Reads are open to every member; writes need the organization's owner role. A key acts with
the role of the user who created it. Anything belonging to another organization answers
404, exactly like something missing.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.views import APIView

from registry import roles
from registry.envelope import Unprocessable, fail, ok
from registry.models import ApiKey
from registry.roles import caller_role
from registry.services import KeyRightsError, api_key_create, api_key_limits_under
from registry.tenancy import services
from registry.tenancy.models import OrgModel, PolicyRule, Quota
from registry.tenancy.selectors import (
    api_keys_of,
    block_visible_get,
    grants_of,
    members_of,
    org_models_of,
    policy_rules_of,
    quotas_of,
    remaining_quota,
)
from registry.tenancy.serializers import (
    ApiKeyCreateSerializer,
    GrantCreateSerializer,
    OrgModelSerializer,
    PolicyRuleSerializer,
    QuotaSerializer,
)

ENVELOPE = OpenApiResponse(description='{"success": true, "data": ...} or {"success": false, "message": ...}')


def require_owner(request, action: str) -> None:
    roles.require_owner(request.user, action)


def own_org(request, slug: str):
    """The caller's organization if `slug` names it; anything else is a 404."""
    org = request.user.organization
    if org.slug != slug:
        raise Http404("Not found.")
    return org


def key_dict(key: ApiKey) -> dict:
    return {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "createdAt": key.created_at.isoformat() if key.created_at else None,
        "createdBy": key.created_by.get_username() if key.created_by_id else None,
        "expiresAt": key.expires_at.isoformat() if key.expires_at else None,
        "revokedAt": key.revoked_at.isoformat() if key.revoked_at else None,
        "lastUsedAt": key.last_used_at.isoformat() if key.last_used_at else None,
        "allowedModels": list(key.allowed_models or []),
        # The key that created this one (revoking it revokes this one too); null when a person did.
        "parentId": key.parent_id,
        "active": key.is_usable(),
    }


class KeysView(APIView):
    @extend_schema(operation_id="api_keys_list", responses={200: ENVELOPE})
    def get(self, request):
        return ok([key_dict(k) for k in api_keys_of(request.user.organization).select_related("created_by")])

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ENVELOPE})
    def post(self, request):
        require_owner(request, "create API keys")
        serializer = ApiKeyCreateSerializer(data=request.data, context={"organization": request.user.organization})
        serializer.is_valid(raise_exception=True)
        parent = request.user.api_key
        creator = request.user.user or (parent.created_by if parent else None)
        # Only owners get here. With no person behind the call (the embedded default's localhost
        # owner, or a key it minted) the new key carries the caller's role itself.
        minted_role = (caller_role(request.user) or "") if creator is None else ""
        values = dict(serializer.validated_data)
        try:
            if parent is not None:
                # A key mints keys with no more rights than its own (models, expiry, role).
                values.update(api_key_limits_under(parent=parent, requested=values))
            key, raw = api_key_create(organization=request.user.organization, created_by=creator,
                                      role=minted_role, parent=parent, **values)
        except KeyRightsError as exc:
            return fail(str(exc))
        # The only time the raw key is ever shown: no cache on the way may keep it.
        response = ok({**key_dict(key), "key": raw}, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


def _own_key(request, pk: int) -> ApiKey:
    key = api_keys_of(request.user.organization).filter(pk=pk).first()
    if key is None:
        raise Http404("Not found.")
    return key


class KeyDetailView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request, pk: int):
        return ok(key_dict(_own_key(request, pk)))

    @extend_schema(responses={200: ENVELOPE})
    def delete(self, request, pk: int):
        require_owner(request, "revoke API keys")
        return ok(key_dict(services.api_key_revoke(api_key=_own_key(request, pk))))


class KeyRevokeView(APIView):
    @extend_schema(request=None, responses={200: ENVELOPE})
    def post(self, request, pk: int):
        require_owner(request, "revoke API keys")
        return ok(key_dict(services.api_key_revoke(api_key=_own_key(request, pk))))


class OrgView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request, slug: str):
        org = own_org(request, slug)
        return ok({"slug": org.slug, "name": org.name, "role": caller_role(request.user)})


class OrgMembersView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request, slug: str):
        org = own_org(request, slug)
        return ok([{"username": m.user.get_username(), "role": m.role} for m in members_of(org)])


class OrgModelsView(APIView):
    @extend_schema(operation_id="api_org_models_list", responses={200: ENVELOPE})
    def get(self, request, slug: str):
        return ok([m.to_dict() for m in org_models_of(own_org(request, slug))])

    @extend_schema(request=OrgModelSerializer, responses={201: ENVELOPE})
    def post(self, request, slug: str):
        org = own_org(request, slug)
        require_owner(request, "register models")
        serializer = OrgModelSerializer(data=request.data, context={"organization": org})
        serializer.is_valid(raise_exception=True)
        try:
            model = services.org_model_register(organization=org, name=serializer.validated_data["name"],
                                                block=serializer.validated_data["block_id"])
        except services.Conflict as exc:
            return fail(str(exc), status=status.HTTP_409_CONFLICT)
        return ok(model.to_dict(), status=status.HTTP_201_CREATED)


def _own_org_model(org, name: str) -> OrgModel:
    model = org_models_of(org).filter(name=name).first()
    if model is None:
        raise Http404("Not found.")
    return model


class OrgModelDetailView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request, slug: str, name: str):
        return ok(_own_org_model(own_org(request, slug), name).to_dict())

    @extend_schema(responses={200: ENVELOPE})
    def delete(self, request, slug: str, name: str):
        org = own_org(request, slug)
        require_owner(request, "unregister models")
        model = _own_org_model(org, name)
        services.org_model_unregister(org_model=model)
        return ok({"name": name, "deleted": True})


def _visible_block_or_404(request, block_id: str):
    block = block_visible_get(organization=request.user.organization, block_id=block_id)
    if block is None:
        raise Http404("Not found.")
    return block


def _owned_block(request, block_id: str):
    block = _visible_block_or_404(request, block_id)
    if block.organization_id != request.user.organization.pk:
        raise PermissionDenied("Only the organization that owns a block may share it.")
    return block


class BlockGrantsView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request, block_id: str):
        block = _owned_block(request, block_id)
        return ok([{"organization": g.organization.slug, "createdAt": g.created_at.isoformat()}
                   for g in grants_of(block)])

    @extend_schema(request=GrantCreateSerializer, responses={201: ENVELOPE})
    def post(self, request, block_id: str):
        block = _owned_block(request, block_id)
        require_owner(request, "share blocks")
        serializer = GrantCreateSerializer(data=request.data, context={"organization": request.user.organization})
        serializer.is_valid(raise_exception=True)
        target = serializer.validated_data["organization"]
        try:
            services.block_grant_create(block=block, organization=target)
        except services.Conflict as exc:
            return fail(str(exc), status=status.HTTP_409_CONFLICT)
        return ok({"block": block.block_id, "organization": target.slug}, status=status.HTTP_201_CREATED)


class BlockGrantDetailView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def delete(self, request, block_id: str, slug: str):
        block = _owned_block(request, block_id)
        require_owner(request, "stop sharing blocks")
        grant = grants_of(block).filter(organization__slug=slug).first()
        if grant is None:
            raise Http404("Not found.")
        services.block_grant_delete(grant=grant)
        return ok({"block": block.block_id, "organization": slug, "deleted": True})


def _rule_values(data: dict) -> tuple[dict, object]:
    values = dict(data)
    return values, values.pop("block", None)


class PoliciesView(APIView):
    @extend_schema(operation_id="api_policies_list", responses={200: ENVELOPE})
    def get(self, request):
        return ok([r.to_dict() for r in policy_rules_of(request.user.organization)])

    @extend_schema(request=PolicyRuleSerializer, responses={201: ENVELOPE})
    def post(self, request):
        require_owner(request, "manage policies")
        org = request.user.organization
        serializer = PolicyRuleSerializer(data=request.data, context={"organization": org})
        serializer.is_valid(raise_exception=True)
        values, block = _rule_values(serializer.validated_data)
        try:
            rule = services.policy_rule_create(organization=org, block=block, values=values)
        except services.Conflict as exc:
            return fail(str(exc), status=status.HTTP_409_CONFLICT)
        return ok(rule.to_dict(), status=status.HTTP_201_CREATED)


def _own_rule(request, pk: int) -> PolicyRule:
    rule = policy_rules_of(request.user.organization).filter(pk=pk).first()
    if rule is None:
        raise Http404("Not found.")
    return rule


class PolicyDetailView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request, pk: int):
        return ok(_own_rule(request, pk).to_dict())

    @extend_schema(request=PolicyRuleSerializer, responses={200: ENVELOPE})
    def patch(self, request, pk: int):
        require_owner(request, "manage policies")
        rule = _own_rule(request, pk)
        serializer = PolicyRuleSerializer(rule, data=request.data, partial=True,
                                          context={"organization": request.user.organization})
        serializer.is_valid(raise_exception=True)
        values, block = _rule_values(serializer.validated_data)
        if "block" in serializer.validated_data and block != rule.block:
            raise Unprocessable({"block": ["a rule's block cannot change; create another rule"]})
        return ok(services.policy_rule_update(rule=rule, values=values).to_dict())

    @extend_schema(responses={200: ENVELOPE})
    def delete(self, request, pk: int):
        require_owner(request, "manage policies")
        services.policy_rule_delete(rule=_own_rule(request, pk))
        return ok({"id": pk, "deleted": True})


class QuotasView(APIView):
    @extend_schema(operation_id="api_quotas_list", responses={200: ENVELOPE})
    def get(self, request):
        return ok([q.to_dict() for q in quotas_of(request.user.organization)])

    @extend_schema(request=QuotaSerializer, responses={201: ENVELOPE})
    def post(self, request):
        require_owner(request, "manage quotas")
        org = request.user.organization
        serializer = QuotaSerializer(data=request.data, context={"organization": org})
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        api_key = values.pop("api_key", None)
        try:
            quota = services.quota_create(organization=org, api_key=api_key, values=values)
        except services.Conflict as exc:
            return fail(str(exc), status=status.HTTP_409_CONFLICT)
        return ok(quota.to_dict(), status=status.HTTP_201_CREATED)


def _own_quota(request, pk: int) -> Quota:
    quota = quotas_of(request.user.organization).filter(pk=pk).first()
    if quota is None:
        raise Http404("Not found.")
    return quota


class QuotaDetailView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request, pk: int):
        return ok(_own_quota(request, pk).to_dict())

    @extend_schema(request=QuotaSerializer, responses={200: ENVELOPE})
    def patch(self, request, pk: int):
        require_owner(request, "manage quotas")
        quota = _own_quota(request, pk)
        serializer = QuotaSerializer(data=request.data, partial=True,
                                     context={"organization": request.user.organization})
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        if "api_key" in values and values.pop("api_key") != quota.api_key:
            raise Unprocessable({"api_key": ["a quota's key cannot change; create another quota"]})
        return ok(services.quota_update(quota=quota, values=values).to_dict())

    @extend_schema(responses={200: ENVELOPE})
    def delete(self, request, pk: int):
        require_owner(request, "manage quotas")
        services.quota_delete(quota=_own_quota(request, pk))
        return ok({"id": pk, "deleted": True})


class UsageView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request):
        return ok(remaining_quota(request.user))


class WhoAmIView(APIView):
    @extend_schema(responses={200: ENVELOPE})
    def get(self, request):
        principal = request.user
        return ok({
            "organization": principal.organization.slug,
            "role": caller_role(principal),
            "apiKey": key_dict(principal.api_key) if principal.api_key is not None else None,
            "devMode": principal.dev_mode,
        })
