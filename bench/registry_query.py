"""Registry query benchmark: 100,000 blocks in PostgreSQL, six representative filters.

    .venv/bin/python bench/registry_query.py [--blocks 100000] [--runs 50]

Creates (drops first) its own database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/sb_bench_registry), migrates it (which creates the GIN
and trigram indexes), bulk-loads varied blocks over 20 organizations with COPY, runs
VACUUM ANALYZE, then times each query exactly as POST /api/blocks/query runs it: compile the
conditions, apply the caller's visibility (own + public + granted), fetch the first page
(100 rows, plus the one that tells whether more follow) and turn each row into to_dict().
It also times the same SQL alone (raw cursor), to separate database time from Python time.
p50/p95 are over --runs runs after 5 warm-up runs. EXPLAIN ANALYZE of each query follows,
to show which index serves it. Not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from _timing import percentile, timed

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/sb_bench_registry"
PAGE = 100

POPULAR_TAGS = ["chat", "qa", "summarization", "code", "vision", "translation", "embedding", "reasoning"]
LONG_TAIL_TAGS = [f"tag-{i:03d}" for i in range(300)]
PROTOCOLS = ["text/plain", "application/json", "image/png", "audio/wav", "text/markdown", "application/pdf"]
REGIONS = ["eu-west", "eu-central", "us-east", "us-west", "ap-south", "ap-east"]
LANGUAGES = ["en", "de", "fr", "es", "it", "ja", "zh", "pt"]
SYLLABLES = ["ka", "lo", "mi", "ren", "tor", "vex", "bra", "qui", "sol", "den", "mar", "tis", "pho", "zen", "ul"]

QUERIES: dict[str, dict] = {
    "tag IN": {"conditions": [{"variable": "tags", "operator": "IN", "value": ["tag-017", "tag-142"]}]},
    "LIKE on description": {"conditions": [{"variable": "description", "operator": "LIKE", "value": "*quantum*"}]},
    "nested AND/OR": {"logicalOperator": "AND", "conditions": [
        {"logicalOperator": "OR", "conditions": [
            {"variable": "tags", "operator": "==", "value": "tag-033"},
            {"variable": "blockMetadata.tags", "operator": "IN", "value": ["tag-250", "tag-251"]},
        ]},
        {"variable": "inputProtocols", "operator": "==", "value": "image/png"},
        {"variable": "enabled", "operator": "==", "value": True},
    ]},
    "metadata dot path ==": {"conditions": [{"variable": "metadata.gpus.memory", "operator": "==", "value": 80}]},
    "protocol ==": {"conditions": [{"variable": "outputProtocols", "operator": "==", "value": "audio/wav"}]},
    "metadata dot path > (range)": {"conditions": [
        {"variable": "metadata.gpus.memory", "operator": ">", "value": 40},
        {"variable": "metadata.region", "operator": "==", "value": "eu-west"},
    ]},
}


def recreate_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def block_rows(count: int, org_ids: list[int], rng: random.Random):
    now = datetime.now(UTC)
    vocabulary = [word(rng) for _ in range(3000)]
    for n in range(count):
        tags = rng.sample(POPULAR_TAGS, rng.randint(0, 2)) + rng.sample(LONG_TAIL_TAGS, rng.randint(1, 3))
        words = rng.sample(vocabulary, rng.randint(8, 20))
        if rng.random() < 0.003:
            words.insert(rng.randrange(len(words)), "quantum")
        metadata = {
            "gpus": {"memory": rng.choice([4, 8, 16, 24, 40, 80]), "count": rng.choice([1, 2, 4, 8])},
            "region": rng.choice(REGIONS),
            "languages": rng.sample(LANGUAGES, rng.randint(1, 3)),
            "contextLength": rng.choice([2048, 4096, 8192, 32768, 131072]),
        }
        yield (
            "optimizer" if rng.random() < 0.1 else "llm",
            f"block-{n:06d}",
            f"Model {n}",
            " ".join(words).capitalize() + ".",
            json.dumps(tags),
            json.dumps(rng.sample(PROTOCOLS, rng.randint(1, 3))),
            json.dumps(rng.sample(PROTOCOLS, rng.randint(1, 2))),
            json.dumps(metadata),
            rng.choice(["openai", "sglang", "grpc", "llamacpp"]),
            "{}",
            rng.choice(org_ids),
            "public" if rng.random() < 0.3 else "private",
            rng.random() < 0.95,
            now,
            now,
        )


def load(count: int) -> object:
    from django.db import connection

    from registry.models import Block, BlockGrant, Organization

    rng = random.Random(42)
    orgs = Organization.objects.bulk_create(
        [Organization(name=f"Org {i}", slug=f"org-{i}") for i in range(20)]
    )
    columns = ("kind, block_id, name, description, tags, input_protocols, output_protocols, metadata, "
               "backend_type, backend_config, organization_id, visibility, enabled, created_at, updated_at")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY registry_block ({columns}) FROM STDIN") as copy:
            for row in block_rows(count, [o.id for o in orgs], rng):
                copy.write_row(row)
    viewer = orgs[0]
    others = Block.objects.exclude(organization=viewer).filter(visibility="private").values_list("id", flat=True)[:500]
    BlockGrant.objects.bulk_create([BlockGrant(block_id=pk, organization=viewer) for pk in others])
    with connection.cursor() as cursor:
        # VACUUM also flushes the GIN pending lists that a bulk load leaves behind, as
        # autovacuum would shortly after a real load.
        cursor.execute("VACUUM ANALYZE")
    print(f"loaded {count:,} blocks over {len(orgs)} organizations in {time.perf_counter() - started:.1f}s")
    return viewer


def run_page(viewer, payload) -> int:
    from registry.selectors import blocks_query

    rows = list(blocks_query(organization=viewer, payload=payload)[: PAGE + 1])
    return len([block.to_dict() for block in rows[:PAGE]])


def run_sql(viewer, payload) -> None:
    """The same page's SQL alone: no compile, no model instances, no to_dict."""
    from django.db import connection

    from registry.selectors import blocks_query

    sql, params = blocks_query(organization=viewer, payload=payload)[: PAGE + 1].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        cursor.fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    recreate_database(url)
    setup_django(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    viewer = load(args.blocks)

    from registry.selectors import blocks_query

    print(f"\n{args.runs} runs each, first page ({PAGE} rows) as the API serves it, caller = {viewer.slug}\n")
    print("| query | matches (visible) | rows on page | API page p50 ms | p95 ms | SQL only p50 ms | p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, payload in QUERIES.items():
        page = timed(lambda p=payload: run_page(viewer, p), args.runs, warmup=5)
        sql = timed(lambda p=payload: run_sql(viewer, p), args.runs, warmup=5)
        rows = run_page(viewer, payload)
        matches = blocks_query(organization=viewer, payload=payload).count()
        print(f"| {label} | {matches:,} | {rows} | {statistics.median(page):.1f} | {percentile(page, 0.95):.1f} "
              f"| {statistics.median(sql):.1f} | {percentile(sql, 0.95):.1f} |")

    if args.no_explain:
        return
    for label, payload in QUERIES.items():
        plan = blocks_query(organization=viewer, payload=payload)[: PAGE + 1].explain(analyze=True, summary=True)
        print(f"\n== EXPLAIN ANALYZE: {label}")
        for line in plan.splitlines():
            if any(word in line for word in ("Scan", "Index", "Limit", "Sort", "Planning Time", "Execution Time", "Recheck")):
                print(line[:160])


if __name__ == "__main__":
    main()
