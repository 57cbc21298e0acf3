"""A real OpenAI-compatible server for the differential test: llama-cpp-python's `llama_cpp.server`
on a GGUF, plus one route of ours, `POST /reset-cache`, which forgets the evaluated prompt.

llama.cpp reuses the longest evaluated prefix of the previous prompt, and a warm prefix changes
logprobs: the test resets it before each side of a pair so both start cold.

    python -m tests.support.llama_reference --model PATH --port N
"""

from __future__ import annotations

import argparse
import contextlib

import uvicorn
from llama_cpp.server import app as server_app
from llama_cpp.server.app import create_app, get_llama_proxy
from llama_cpp.server.settings import ModelSettings, ServerSettings


def build(model: str, port: int):
    app = create_app(server_settings=ServerSettings(host="127.0.0.1", port=port),
                     model_settings=[ModelSettings(model=model, n_ctx=2048, n_threads=2, n_threads_batch=2,
                                                   verbose=False)])

    @app.post("/reset-cache")
    async def reset_cache() -> dict:
        # Under the server's own request lock, so no generation is running while it resets.
        async with contextlib.asynccontextmanager(get_llama_proxy)() as proxy:
            proxy().reset()
        return {"reset": True}

    assert server_app._llama_proxy is not None
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.model, args.port), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
