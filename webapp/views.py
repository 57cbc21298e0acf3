from django.db import connection
from django.http import JsonResponse
from django.views import defaults

from webapp.middleware import api_error, is_api_path


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"success": True, "data": {"status": "ok"}})


# Django's own error pages are HTML; under /api and /discovery a client expects the envelope
# (an unknown URL, a path converter that did not match, a SuspiciousOperation, a crash).
def bad_request(request, exception=None):
    if is_api_path(request.path_info):
        return api_error(f"bad request: {exception}" if exception else "bad request", 400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if is_api_path(request.path_info):
        return api_error("permission denied", 403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception=None):
    if is_api_path(request.path_info):
        return api_error(f"no such endpoint: {request.method} {request.path_info}", 404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if is_api_path(request.path_info):
        return api_error("the server failed to handle the request", 500)
    return defaults.server_error(request)
