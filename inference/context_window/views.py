"""The context window API (docs/context-window.md): /api/sessions/<session_id>. Members read, append
and trim their organization's sessions; deleting one takes an owner or whoever made it. Another
organization's session is the same 404 as a missing one."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.views import APIView

from inference.context_window import selectors, services
from inference.context_window.models import ChatSession, SessionMessage
from registry import roles
from registry.envelope import fail, ok
from registry.fields import StrictCharField, StrictIntegerField
from registry.models import Membership
from registry.selectors import block_resolve

ENVELOPE = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": true, "data": ...}')
ERROR = OpenApiResponse(OpenApiTypes.OBJECT, description='{"success": false, "message": "..."}')


# The rules services.check_messages applies, stated in the schema too (a client sees them before it sends).
CONTENT_SCHEMA = {"oneOf": [
    {"type": "string"},
    {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}},
]}


@extend_schema_field(CONTENT_SCHEMA)
class ContentField(serializers.JSONField):
    """A message's content: a string or a list of content parts."""


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=services.ROLES)
    content = ContentField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=64)


class AppendSerializer(serializers.Serializer):
    messages = serializers.ListField(child=MessageSerializer(), min_length=1)


class TrimSerializer(serializers.Serializer):
    model = StrictCharField(max_length=200, help_text="the block whose context and tokenizer count")
    max_tokens = StrictIntegerField(required=False, min_value=1, max_value=10_000_000,
                                    help_text="the budget; default the block's context length")
    reserve = StrictIntegerField(required=False, min_value=0, max_value=10_000_000, default=0,
                                       help_text="tokens kept free for the answer")


def _message_dict(message: SessionMessage) -> dict:
    return {"role": message.role, "content": message.content, **({"name": message.name} if message.name else {}),
            "createdAt": message.created_at.isoformat()}


def session_dict(session: ChatSession, *, messages: list[SessionMessage] | None = None) -> dict:
    data = {"sessionId": session.session_id, "createdAt": session.created_at.isoformat(),
            "updatedAt": session.updated_at.isoformat()}
    if messages is not None:
        data["messages"] = [_message_dict(m) for m in messages]
    return data


def _refused(exc: services.SessionError):
    return fail(exc.message, status=exc.status, **({"errors": [exc.message]} if exc.param else {}))


def _session(request, session_id: str) -> ChatSession:
    session = selectors.session_get(organization=request.user.organization, session_id=session_id)
    if session is None:
        raise Http404("Not found.")
    return session


def _person(principal):
    if principal.user is not None and getattr(principal.user, "pk", None) is not None:
        return principal.user
    return principal.api_key.created_by if principal.api_key is not None else None


# The session id's rule, stated for every path that names one (services.SESSION_ID applies it).
SESSION_ID_PARAMETER = OpenApiParameter("session_id", str, OpenApiParameter.PATH, pattern=services.SESSION_ID.pattern,
                                        description="1-128 letters, digits and . _ : @ -")


class SessionsView(APIView):
    @extend_schema(operation_id="api_sessions_list", responses={200: ENVELOPE})
    def get(self, request):
        return ok([session_dict(s) for s in selectors.sessions_of(request.user.organization)[:500]])


class SessionDetailView(APIView):
    @extend_schema(operation_id="api_session", responses={200: ENVELOPE, 404: ERROR},
                   parameters=[SESSION_ID_PARAMETER])
    def get(self, request, session_id: str):
        session = _session(request, session_id)
        return ok(session_dict(session, messages=selectors.session_messages(session)))

    @extend_schema(operation_id="api_session_delete", responses={200: ENVELOPE, 403: ERROR, 404: ERROR},
                   parameters=[SESSION_ID_PARAMETER])
    def delete(self, request, session_id: str):
        session = _session(request, session_id)
        person = _person(request.user)
        if roles.caller_role(request.user) != Membership.OWNER and (
                person is None or person.pk != session.created_by_id):
            return fail("Only organization owners, or the member who started it, may delete a session.", status=403)
        services.session_delete(session=session)
        return ok(None, status=status.HTTP_200_OK)


class SessionMessagesView(APIView):
    @extend_schema(operation_id="api_session_append", request=AppendSerializer, parameters=[SESSION_ID_PARAMETER],
                   responses={201: ENVELOPE, 400: ERROR, 409: ERROR})
    def post(self, request, session_id: str):
        # AppendSerializer states the rules in the schema; check_messages applies them, naming the param.
        data = request.data if isinstance(request.data, dict) else {}
        try:
            services.check_session_id(session_id, param="session id")
            messages = services.check_messages(data.get("messages"))
            session = services.session_append(organization=request.user.organization, session_id=session_id,
                                               messages=messages, user=_person(request.user))
        except services.SessionError as exc:
            return _refused(exc)
        return ok(session_dict(session, messages=selectors.session_messages(session)), status=status.HTTP_201_CREATED)


class SessionTrimView(APIView):
    @extend_schema(operation_id="api_session_trim", request=TrimSerializer, parameters=[SESSION_ID_PARAMETER],
                   responses={200: ENVELOPE, 400: ERROR, 403: ERROR, 404: ERROR, 422: ERROR})
    def post(self, request, session_id: str):
        session = _session(request, session_id)
        serializer = TrimSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # The gateway's naming rule: a foreign private block reads exactly like a missing one.
        block = block_resolve(organization=request.user.organization, reference=data["model"])
        if block is None:
            return fail(f"The model '{data['model']}' does not exist or you do not have access to it.", status=404)
        if not request.user.allows_block(block):
            return fail(f"This API key is not allowed to use the model '{data['model']}'.", status=403)
        try:
            result = services.session_trim(session=session, block=block, max_tokens=data.get("max_tokens"),
                                           reserve=data["reserve"])
        except services.SessionError as exc:
            return _refused(exc)
        return ok(result)
