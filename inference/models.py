"""What the inference side records: per-block metrics buckets and the engines that serve blocks."""

from __future__ import annotations

from django.db import models


class BlockMetricBucket(models.Model):
    """One block's counters for one minute of one calling organization's requests. Written off the
    request path, summed over windows."""

    block = models.ForeignKey("registry.Block", on_delete=models.CASCADE, related_name="metric_buckets")
    # Whose requests these are: a shared block's metrics show another organization only its own.
    organization = models.ForeignKey("registry.Organization", on_delete=models.CASCADE,
                                     related_name="metric_buckets")
    minute = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0.0)
    ttft_ms_sum = models.FloatField(default=0.0)
    ttft_count = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    # Counts per log-spaced latency bucket, so percentiles survive summing minutes together.
    latency_hist = models.JSONField(default=dict)
    ttft_hist = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["block", "organization", "minute"],
                                               name="unique_block_org_minute")]
        indexes = [models.Index(fields=["block", "-minute"], name="metric_block_minute")]

    def __str__(self) -> str:
        return f"{self.block_id} @ {self.minute:%Y-%m-%d %H:%M}"


class Engine(models.Model):
    """One inference engine (an SGLang server) serving one block on one node."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    DEAD = "dead"
    STATES = [(STARTING, "Starting"), (READY, "Ready"), (DRAINING, "Draining"), (DEAD, "Dead")]

    block = models.ForeignKey("registry.Block", on_delete=models.CASCADE, related_name="engines")
    node = models.CharField(max_length=200)
    gpu = models.CharField(max_length=50, blank=True)
    endpoint = models.URLField(max_length=500)
    state = models.CharField(max_length=10, choices=STATES, default=STARTING)
    capacity = models.PositiveIntegerField(default=64)
    load = models.FloatField(default=0.0)
    pid = models.PositiveIntegerField(null=True, blank=True)
    restarts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "endpoint"], name="unique_engine_endpoint")]
        indexes = [models.Index(fields=["block", "state"], name="engine_block_state")]

    def __str__(self) -> str:
        return f"{self.block_id}@{self.node} ({self.state})"


class PlannerConfig(models.Model):
    """How `model: "auto"` chooses a block for one organization (no row: the defaults below).

    Modes: `hardcoded` always runs `default_block`; `tags` ranks by the blocks' tags found in the
    conversation; `similarity` by meaning (embeddings); `plan` searches by similarity, then asks
    `planner_block` (an LLM) to choose among the best candidates. When no block fits, `default_block` runs
    if set, else the request is a 404 `no_fitting_model`.
    """

    HARDCODED = "hardcoded"
    TAGS = "tags"
    SIMILARITY = "similarity"
    PLAN = "plan"
    MODES = [(HARDCODED, "Hard-coded block"), (TAGS, "By tags"), (SIMILARITY, "By similarity"),
             (PLAN, "Plan, search, retrieve, execute")]

    organization = models.OneToOneField("registry.Organization", on_delete=models.CASCADE,
                                        related_name="planner_config")
    mode = models.CharField(max_length=20, choices=MODES, default=SIMILARITY)
    # The LLM that chooses in `plan` mode (and for POST /api/planner/select when none is named).
    planner_block = models.ForeignKey("registry.Block", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    # Runs when nothing fits (and always in `hardcoded` mode).
    default_block = models.ForeignKey("registry.Block", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    # Below this similarity score nothing fits; null: the server's calibrated SIMILARITY_MIN_SCORE.
    min_score = models.FloatField(null=True, blank=True)
    # How many of the best-ranked blocks the planner chooses among in `plan` mode.
    candidates = models.PositiveSmallIntegerField(default=8)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"planner {self.organization_id}: {self.mode}"


class RequestLogEntry(models.Model):
    """One finished chat request as the gateway saw it. Written off the request path in batches
    (inference.request_log), kept REQUEST_LOG_RETENTION_DAYS. The prompt and answer are kept only
    when the calling organization turned RequestLogSettings.store_content on."""

    organization = models.ForeignKey("registry.Organization", on_delete=models.CASCADE, related_name="request_log")
    created_at = models.DateTimeField(db_index=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    # The key's name and prefix are copied: the row stays readable after the key is deleted.
    api_key = models.ForeignKey("registry.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    key_label = models.CharField(max_length=130, blank=True, default="")
    block = models.ForeignKey("registry.Block", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=300)  # as the caller named the block that served
    status = models.PositiveSmallIntegerField()
    stream = models.BooleanField(default=False)
    latency_ms = models.FloatField()
    ttft_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    # How `model: "auto"` chose the block (the x-switchboard-route header's object); null when named.
    route = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    prompt = models.JSONField(null=True, blank=True)
    # NULL: not kept (the organization keeps no content); "": an empty answer that was kept.
    answer = models.TextField(null=True, blank=True)  # noqa: DJ001

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="reqlog_org_time"),
                   models.Index(fields=["organization", "block", "-created_at"], name="reqlog_org_block_time")]

    def __str__(self) -> str:
        return f"{self.request_id or self.pk} {self.model} {self.status}"


class RequestLogSettings(models.Model):
    """An organization's request log choices (no row: the defaults). Owners change them."""

    organization = models.OneToOneField("registry.Organization", on_delete=models.CASCADE,
                                        related_name="request_log_settings")
    # Off by default: prompts and answers are the tenant's data, kept only when it asks.
    store_content = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"request log {self.organization_id}: content {'on' if self.store_content else 'off'}"
