"""`manage.py inference_worker --gpu 0 --model <block_id>`: a Celery worker that owns its engines.

GPU mode (--gpu): supervise one SGLang server per --model and consume `inference.gpu.<node>`.
CPU mode (--cpu): consume `inference.cpu` (the built-in llama.cpp model and other queued blocks).
"""

from __future__ import annotations

import socket

from celery import current_app
from celery.signals import worker_shutting_down
from django.core.management.base import BaseCommand, CommandError

from inference.backends.queued.queues import CPU_QUEUE, gpu_queue
from inference.workers.supervisor import EngineSpec, EngineSupervisor, free_port
from registry.selectors import blocks_named_anywhere


class Command(BaseCommand):
    help = "Run an inference worker: supervise SGLang engines and consume the node's Celery queue."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--gpu", default=None, help="GPU index(es) for the engines, e.g. 0 or 0,1")
        parser.add_argument("--cpu", action="store_true", help="serve the inference.cpu queue (no engines)")
        parser.add_argument("--model", action="append", default=[], help="block id, or <org-slug>/<block-id> when several organizations use "
                                 "the id, to serve (repeatable)")
        parser.add_argument("--node", default=socket.gethostname(), help="node name (queue inference.gpu.<node>)")
        parser.add_argument("--engine-cmd", default=None,
                            help="engine command prefix (default: python -m sglang.launch_server)")
        parser.add_argument("--engine-host", default="127.0.0.1", help="address the engine binds")
        parser.add_argument("--advertise-host", default=None,
                            help="address gateways reach the engine at (default: --engine-host)")
        parser.add_argument("--engine-port", type=int, default=30000, help="first engine port (0: any free)")
        parser.add_argument("--concurrency", type=int, default=128,
                            help="task threads: requests this worker keeps in flight at once")
        parser.add_argument("--queue", action="append", default=[], help="extra queue to consume")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *args, **opts) -> None:
        # webapp.celery's app: the current one in every process that loads Django's settings.
        app = current_app._get_current_object()
        if opts["gpu"] is None and not opts["cpu"]:
            raise CommandError("give --gpu N (with --model) or --cpu")
        if opts["gpu"] is not None and not opts["model"]:
            raise CommandError("a GPU worker needs at least one --model <block_id>")
        queues = list(opts["queue"])
        supervisors: list[EngineSupervisor] = []
        if opts["cpu"]:
            queues.append(CPU_QUEUE)
        if opts["gpu"] is not None:
            queues.append(gpu_queue(opts["node"]))
            for i, block_id in enumerate(opts["model"]):
                # Ids are unique per organization: a plain id that several use must be qualified.
                found = list(blocks_named_anywhere(block_id)[:2])
                if len(found) != 1:
                    raise CommandError(f"no block {block_id!r}" if not found else
                                       f"several organizations have a block {block_id!r}; "
                                       "give it as <org-slug>/<block-id>")
                block = found[0]
                port = opts["engine_port"] + i if opts["engine_port"] else free_port(opts["engine_host"])
                spec = EngineSpec.from_block(
                    block, node=opts["node"], gpu=str(opts["gpu"]), port=port, host=opts["engine_host"],
                    advertise_host=opts["advertise_host"] or opts["engine_host"], command=opts["engine_cmd"])
                supervisors.append(EngineSupervisor(spec))
        for supervisor in supervisors:
            supervisor.start()
        # Threads pool in this process: the engines are our children and task threads share one
        # asyncio loop with one HTTP pool (see inference/workers/README.md).
        worker = app.Worker(queues=queues, pool="threads", concurrency=opts["concurrency"],
                            hostname=f"{'gpu' + str(opts['gpu']) if opts['gpu'] is not None else 'cpu'}@{opts['node']}",
                            loglevel=opts["loglevel"], prefetch_multiplier=1, without_gossip=True,
                            without_mingle=True)

        def drain_engines(**kwargs) -> None:
            # Sent as the warm shutdown begins, before Celery waits for the running tasks: the
            # gateway stops routing new requests here now, not once those tasks are done. The
            # engines keep serving until stop() below. Sent from the signal handler, whose thread
            # may be mid-query on its own DB connection: the writes go in threads of their own.
            for supervisor in supervisors:
                supervisor.drain_in_thread()

        worker_shutting_down.connect(drain_engines, weak=False)
        try:
            worker.start()
        finally:
            worker_shutting_down.disconnect(drain_engines)
            for supervisor in supervisors:
                supervisor.stop()
        if worker.exitcode:
            raise SystemExit(worker.exitcode)
