#!/bin/bash
# Device-side driver for the GPU bench (bench/RESULTS.md): run from the repository root on the lent GPU
# machine, after bench/gpu_prepare.sh filled .gpu/ here and the device tool carried it (carry: [".gpu"]).
#   BENCH_SPECS="256 1,64,128 3 t256;128 1,16,64 3 t128;256 64,128 3 t256w4 --gateway-workers 4" bash .gpu/run.sh
# Each spec: tokens, concurrency levels, repeats, tag, extra bench flags. Logs land in $OUT.
# Device-side driver: env facts, wheels, Redis, engine self-check, engine + bench. Output under $OUT.
set -o pipefail
G=$PWD/.gpu
log() { echo "== $* ($(date +%T))"; }
log env
nvidia-smi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
which python3; python3 -V; nproc; free -g | head -2; cat /etc/os-release | head -2
python3 -c "import torch, transformers, tokenizers, aiohttp, uvloop, numpy; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'aiohttp', aiohttp.__version__, 'uvloop', uvloop.__version__)"
python3 -m pip list 2>/dev/null | grep -i -E "^(django|celery|redis|orjson|uvicorn|fastapi|psycopg|channels|kombu|click|msgpack|pyyaml|attrs|grpcio|protobuf|httpx|openai|pydantic|starlette) " | tr '\n' ';'; echo
python3 -c "import fastapi" 2>&1 | tail -1
log wheels
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $G/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
cp $G/bench/*.py bench/
cat $G/COMMIT 2>/dev/null
# Since the 'degraded' merge, settings give every DATABASE_URL psycopg's connect_timeout, which SQLite
# rejects: on this throwaway copy only, apply it to PostgreSQL alone.
sed -i 's/^    DATABASES\["default"\].setdefault("OPTIONS", {}).setdefault($/    if "postgresql" in DATABASES["default"]["ENGINE"]: DATABASES["default"].setdefault("OPTIONS", {}).setdefault(/' webapp/settings.py
grep -n '"connect_timeout"' -B1 webapp/settings.py
log redis
ldd $G/redis/redis-server | grep -i "not found"
LD_LIBRARY_PATH=$G/redis/lib $G/redis/redis-server --port ${REDIS_PORT:-6379} --save "" --appendonly no --daemonize yes --logfile /tmp/redis.log || exit 1
sleep 1; python3 -c "import redis, os; print('redis ping', redis.Redis(port=int(os.environ.get('REDIS_PORT', 6379))).ping())"
log self-check
EFLAGS=""
python3 bench/gpu_engine.py --self-check --plain-ops --max-slots 128 --max-len 512 2>&1 | tee $OUT/selfcheck.log
python3 bench/gpu_engine.py --self-check ${MICRO---microbench} --max-slots 128 --max-len 512 2>&1 | tee -a $OUT/selfcheck.log || {
  log "fused ops failed the self-check: plain ops"; EFLAGS="--plain-ops"
  python3 bench/gpu_engine.py ${MICRO---microbench} $EFLAGS --max-slots 128 --max-len 512 2>&1 | tee -a $OUT/selfcheck.log; }
bench() {  # tokens, concurrency, repeat, tag, extra bench flags
  log "bench $4"
  python3 bench/gpu_engine.py --port 30000 --max-slots 128 --max-len 512 $EFLAGS --tokenizer $G/tokenizer.json > $OUT/engine_$4.log 2>&1 &
  EPID=$!
  PYTHONUNBUFFERED=1 python3 bench/queued_vs_direct.py --engine-url http://127.0.0.1:30000 --tokens $1 \
    --concurrency $2 --repeat $3 "${@:5}" --admin-db-url sqlite:////tmp/sb/bench.db --redis-url redis://127.0.0.1:${REDIS_PORT:-6379}/15 \
    2>&1 | grep -v "^$" | tee $OUT/bench_$4.log
  curl -s 127.0.0.1:30000/stats | tee -a $OUT/bench_$4.log; echo
  curl -s 127.0.0.1:30000/v1/chat/completions -d '{"messages":[{"role":"user","content":"Say hello"}],"max_tokens":24}' | tee -a $OUT/bench_$4.log; echo
  kill $EPID; wait $EPID 2>/dev/null
  tail -n 3 var/bench/gateway.log var/bench/worker0.log
}
IFS=';' read -ra SPECS <<< "${BENCH_SPECS:-256 1,64 3 t256}"
for spec in "${SPECS[@]}"; do bench $spec; done
log done
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv
