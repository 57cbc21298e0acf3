"""The request log pages: the organization's requests, filtered and paginated; one request's
details (with its prompt and answer when the organization keeps them); the owner's switch for
keeping them."""

from __future__ import annotations

from django import forms
from django.conf import settings as django_settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from inference.models import RequestLogEntry
from inference.request_log import request_log_settings_get, request_log_settings_update
from inference.selectors import request_log_entries
from registry.models import ApiKey, Organization
from registry.selectors import block_get_visible
from webapp.dashboard.access import require_member, require_owner

PAGE_SIZE = 50
STATUS_CHOICES = [("", "Any"), ("ok", "OK (200)"), ("error", "Errors"), ("left", "Client left (499)"),
                  ("400", "400"), ("404", "404"), ("429", "429"), ("500", "500"), ("502", "502"), ("504", "504")]
_LOCAL_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class RequestLogFilter(forms.Form):
    block = forms.CharField(required=False, max_length=300, label="Block",
                            widget=forms.TextInput(attrs={"placeholder": "block id"}))
    key = forms.ModelChoiceField(queryset=ApiKey.objects.none(), required=False, label="API key",
                                 empty_label="Any key")
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False, label="Status")
    since = forms.DateTimeField(required=False, label="From (UTC)", widget=_LOCAL_INPUT,
                                input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"])
    until = forms.DateTimeField(required=False, label="To (UTC)", widget=_LOCAL_INPUT,
                                input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"])

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.fields["key"].queryset = ApiKey.objects.filter(organization=organization).order_by("name")
        self.resolved_block = None

    def clean_block(self) -> str:
        reference = self.cleaned_data["block"].strip()
        if reference:
            if "\x00" in reference:
                raise forms.ValidationError("No block has that id.")
            self.resolved_block = block_get_visible(organization=self.organization, block_id=reference)
            if self.resolved_block is None:
                raise forms.ValidationError("No block with that id is visible to your organization.")
        return reference

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "Must be after the start.")
        return data


@login_required
def request_log(request: HttpRequest) -> HttpResponse:
    org = require_member(request).organization
    form = RequestLogFilter(request.GET or None, organization=org)
    page = None
    status = 200
    if form.is_bound and not form.is_valid():
        status = 400
    else:
        data = form.cleaned_data if form.is_bound else {}
        key = data.get("key")
        rows = request_log_entries(organization=org, block=form.resolved_block,
                                   api_key_pk=key.pk if key is not None else None, status=data.get("status", ""),
                                   since=data.get("since"), until=data.get("until"))
        page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "dashboard/request_log/list.html", {
        "org": org, "form": form, "page": page, "query": query.urlencode(),
        "settings": request_log_settings_get(org), "retention_days": django_settings.REQUEST_LOG_RETENTION_DAYS,
    }, status=status)


@login_required
def request_log_entry(request: HttpRequest, pk: int) -> HttpResponse:
    org = require_member(request).organization
    entry = RequestLogEntry.objects.filter(organization=org, pk=pk).select_related("block").first()
    if entry is None:
        raise Http404("No such request.")
    return render(request, "dashboard/request_log/entry.html", {"org": org, "entry": entry})


@login_required
@require_POST
def request_log_settings(request: HttpRequest) -> HttpResponse:
    org = require_owner(request, "change what the request log keeps").organization
    request_log_settings_update(organization=org, store_content=request.POST.get("store_content") == "on")
    return redirect("dashboard-request-log")
