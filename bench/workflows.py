"""Workflow scheduling on a real Celery worker (issue 11, item 6).

    .venv/bin/python bench/workflows.py [--runs 20] [--paused 1000] [--approve 100]

It makes a throwaway PostgreSQL database, migrates it, starts the fast fake upstream
(tests/support/fake_upstream.py) in this process and one Celery worker (threads pool, the production
shape) on its own Redis database, then measures:

  1. a 10-node diamond (1 -> 2 -> 4 -> 2 -> 1) of block calls: the scheduling overhead of each node,
     from the end of its last parent to its own start (NodeRun timestamps), p50 and p95; target p50 <= 20 ms.
     Side by side in one run, on two workers started alike (runs alternate between them): every ready child
     sent through the broker (WORKFLOW_INLINE_CHILD=0, how it was) and the default, where the task that
     finished a node runs one ready child itself (services.node_run_chain).
  2. --paused runs stopped at an approval: the worker's RSS before and after, the broker's queue length
     and unacked messages, and the rows they hold: a paused run holds no worker, no task, no memory.
  3. --approve of them approved, one decision at a time as POST /api/approvals/<id>/decision makes it:
     from the decision to the start of the next node, p50 and p95; target p50 <= 100 ms.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYERS = [["s"], ["l1a", "l1b"], ["l2a", "l2b", "l2c", "l2d"], ["l3a", "l3b"], ["t"]]


def diamond() -> dict:
    """10 block nodes; each node of a wider layer has one parent, of a narrower layer two."""
    nodes = []
    for depth, layer in enumerate(LAYERS):
        above = LAYERS[depth - 1] if depth else []
        for i, node_id in enumerate(layer):
            if not above:
                parents = []
            elif len(layer) > len(above):
                parents = [above[i * len(above) // len(layer)]]
            else:
                per = len(above) // len(layer)
                parents = above[i * per:(i + 1) * per]
            nodes.append({"id": node_id, "type": "block", "block": "fast", "prompt": node_id,
                          "params": {"max_tokens": 4}, **({"after": parents} if parents else {})})
    return {"name": "diamond", "version": "1", "nodes": nodes}


GATED = {"name": "gated", "version": "1", "nodes": [
    {"id": "draft", "type": "block", "block": "fast", "prompt": "draft"},
    {"id": "gate", "type": "approval", "after": ["draft"], "approvers": {"role": "member"}},
    {"id": "send", "type": "block", "block": "fast", "after": ["gate"], "prompt": "send"}]}


def make_database(admin_url: str) -> str:
    import psycopg

    name = f"sb_bench_wf_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_url)._replace(path="/" + name))


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="diamond runs per worker, one after another")
    parser.add_argument("--paused", type=int, default=1000, help="runs left paused at an approval")
    parser.add_argument("--approve", type=int, default=100, help="how many of those to approve")
    parser.add_argument("--concurrency", type=int, default=16, help="the worker's threads")
    parser.add_argument("--admin-db-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    args = parser.parse_args()

    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    db_url = make_database(args.admin_db_url)
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": args.redis_url, "DEBUG": "0",
           "SECRET_KEY": "bench-only-not-secret", "SECURE_SSL_REDIRECT": "0", "ALLOWED_HOSTS": "127.0.0.1",
           "PYTHONUNBUFFERED": "1", "EGRESS_ALLOW": "127.0.0.1", "WORKFLOW_EXECUTOR": "celery"}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    workers: dict[str, subprocess.Popen] = {}
    try:
        import django

        django.setup()
        import redis
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection

        from inference.workflows import services
        from inference.workflows.models import Approval, NodeRun, WorkflowRun
        from registry.models import Block, Membership, Organization
        from registry.principal import Principal
        from tests.support.fake_upstream import FakeUpstream

        call_command("migrate", verbosity=0)
        broker = redis.Redis.from_url(args.redis_url)
        broker.flushdb()
        upstream = FakeUpstream().start()
        org = Organization.objects.create(name="Bench", slug="bench")
        user = get_user_model().objects.create_user(username="bench-owner", password="x")
        Membership.objects.create(user=user, organization=org, role=Membership.OWNER)
        Block.objects.create(block_id="fast", name="fast", organization=org, backend_type="openai",
                             backend_config={"base_url": upstream.base_url("ok-chunks2")})
        principal = Principal(organization=org, user=user)

        def start_worker(name: str, inline: bool) -> subprocess.Popen:
            worker_env = {**env, "WORKFLOW_INLINE_CHILD": "1" if inline else "0", "WORKFLOW_QUEUE": name}
            return subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", name, "-P", "threads",
                 "-c", str(args.concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat", "-l",
                 "WARNING", "-n", f"{name}-{os.getpid()}@%h"],
                cwd=ROOT, env=worker_env, stdout=(logs / f"{name}-worker.log").open("wb"), stderr=subprocess.STDOUT,
                start_new_session=True)

        # One worker per way of handing a ready child on; the bench sends each run's roots to one of them.
        modes = {"broker": "wf-broker", "inline": "wf-inline"}
        workers.update({mode: start_worker(queue, inline=mode == "inline") for mode, queue in modes.items()})
        worker = workers["inline"]
        time.sleep(4)  # the workers' startup
        rss_start = rss_mib(worker.pid)

        # 1. The diamond, runs alternating between the two workers.
        version, _ = services.workflow_publish(principal=principal, raw=diamond())
        parents = {n["id"]: n.get("after", []) for n in version.document["nodes"]}
        gaps: dict[str, list[float]] = {mode: [] for mode in modes}
        advance: dict[str, list[float]] = {mode: [] for mode in modes}  # last parent's end -> child queued
        pickup: dict[str, list[float]] = {mode: [] for mode in modes}  # queued -> claimed by a worker thread
        walls: dict[str, list[float]] = {mode: [] for mode in modes}
        for i in range(args.runs + 1):  # the first round warms the workers' connections: not counted
            for mode, queue in modes.items():
                settings.WORKFLOW_QUEUE = queue
                started = time.perf_counter()
                run = services.run_start(version=version, principal=principal, input={})
                wait_until(lambda run=run: WorkflowRun.objects.filter(pk=run.pk, state__in=WorkflowRun.FINISHED)
                           .exists(), 60, "a diamond run")
                wall = time.perf_counter() - started
                nodes = {n.node_id: n for n in NodeRun.objects.filter(run=run)}
                assert all(n.state == NodeRun.SUCCEEDED for n in nodes.values()), \
                    [(n.node_id, n.error) for n in nodes.values()]
                if i == 0:
                    continue
                walls[mode].append(wall)
                for node_id, ps in parents.items():
                    if ps:
                        last_parent = max(nodes[p].finished_at for p in ps)
                        child = nodes[node_id]
                        gaps[mode].append((child.started_at - last_parent).total_seconds() * 1000)
                        advance[mode].append((child.queued_at - last_parent).total_seconds() * 1000)
                        pickup[mode].append((child.started_at - child.queued_at).total_seconds() * 1000)
        settings.WORKFLOW_QUEUE = modes["inline"]
        rss_after_diamonds = rss_mib(worker.pid)

        # 2. Runs paused at an approval.
        gated, _ = services.workflow_publish(principal=principal, raw=GATED)
        started = time.perf_counter()
        paused = [services.run_start(version=gated, principal=principal, input={}).pk for _ in range(args.paused)]
        wait_until(lambda: NodeRun.objects.filter(run_id__in=paused, node_id="gate", state=NodeRun.WAITING).count()
                   == len(paused), 900, "every run to pause")
        pause_s = time.perf_counter() - started
        time.sleep(2)  # let the worker settle before reading its memory
        rss_paused = rss_mib(worker.pid)
        queue_len = broker.llen(settings.WORKFLOW_QUEUE)
        unacked = broker.hlen("unacked")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_total_relation_size('workflows_workflowrun') + pg_total_relation_size("
                           "'workflows_noderun') + pg_total_relation_size('workflows_approval') + "
                           "pg_total_relation_size('workflows_runevent')")
            table_bytes = cursor.fetchone()[0]

        # 3. Approve some of them, one decision at a time.
        delays: list[float] = []
        approvals = list(Approval.objects.filter(run_id__in=paused[:args.approve]).order_by("pk"))
        for approval in approvals:
            decided = services.approval_decide(approval=approval, principal=principal, decision="approve")
            send = NodeRun.objects.filter(run_id=approval.run_id, node_id="send")
            wait_until(lambda send=send: send.filter(started_at__isnull=False).exists(), 30, "the next node")
            delays.append((send.get().started_at - decided.decided_at).total_seconds() * 1000)
        wait_until(lambda: WorkflowRun.objects.filter(pk__in=paused[:args.approve], state=WorkflowRun.SUCCEEDED)
                   .count() == len(approvals), 60, "the approved runs to finish")

        print(f"\nworkflows bench: Celery workers (threads, -c {args.concurrency}), fake upstream in-process, "
              f"{os.cpu_count()} CPUs (shared)")
        print(f"\n1. 10-node diamond x {args.runs} per worker, alternating: scheduling overhead per node "
              "(end of last parent -> start)")
        for mode, label in (("broker", "every child through the broker (before)"),
                            ("inline", "one ready child run by the finishing task (now)")):
            print(f"   {label}: p50 {statistics.median(gaps[mode]):.1f} ms   p95 {pct(gaps[mode], 95):.1f} ms   "
                  f"max {max(gaps[mode]):.1f} ms; parent's end -> child queued p50 "
                  f"{statistics.median(advance[mode]):.1f} ms, queued -> claimed p50 "
                  f"{statistics.median(pickup[mode]):.1f} ms; whole run p50 {statistics.median(walls[mode]) * 1000:.0f} ms")
        before, now = statistics.median(gaps["broker"]), statistics.median(gaps["inline"])
        print(f"   before / now: p50 {before / max(now, 1e-9):.1f}x, whole run "
              f"{statistics.median(walls['broker']) / statistics.median(walls['inline']):.2f}x "
              f"(target p50 <= 20 ms: {'met' if now <= 20 else 'NOT met'})")
        print(f"\n2. {len(paused)} runs paused at an approval (reached in {pause_s:.1f} s)")
        print(f"   worker RSS: {rss_start:.1f} MiB at start, {rss_after_diamonds:.1f} after the diamonds, "
              f"{rss_paused:.1f} with the runs paused ({rss_paused - rss_after_diamonds:+.1f} MiB)")
        print(f"   broker: {queue_len} messages queued, {unacked} unacked; rows: {table_bytes / 1024 / 1024:.1f} MiB "
              f"of workflow tables ({table_bytes / max(1, len(paused) + args.runs + 1) / 1024:.1f} KiB a run)")
        print(f"\n3. {len(approvals)} approvals, one at a time: decision -> next node started")
        print(f"   p50 {statistics.median(delays):.1f} ms   p95 {pct(delays, 95):.1f} ms   max {max(delays):.1f} ms   "
              f"(target p50 <= 100 ms: {'met' if statistics.median(delays) <= 100 else 'NOT met'})")
        upstream.stop()
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers.values():
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        from django.db import connections

        connections.close_all()
        drop_database(args.admin_db_url, db_url)


if __name__ == "__main__":
    main()
