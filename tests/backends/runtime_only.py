"""Run as a script by test_runtime_dependencies.py: the gRPC backends in an interpreter that can
import only the runtime dependencies' closure (the distribution names arrive as JSON in argv[1]).

Before anything else is imported, one meta-path finder replaces the others and finds nothing for a
top-level module that installed distributions provide but none of the closure's: the import fails
with ModuleNotFoundError (and importlib.util.find_spec answers None, as optional-import probes
expect), exactly as in an environment built by `pip install .` with no extras. The standard library
and the project's own packages (no distribution provides them) are found as usual. Then it loads
the server the way `make run` serves it and runs both gRPC backends, through the factory the
gateway uses, against real gRPC servers on loopback. Prints one JSON line.
"""

import asyncio
import json
import os
import re
import sys
from importlib.abc import MetaPathFinder
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = {"webapp", "registry", "inference", "tests"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class RuntimeOnly(MetaPathFinder):
    def __init__(self, closure: set[str]):
        self.closure = closure
        self.providers = {top: {normalize(d) for d in dists} for top, dists in packages_distributions().items()}
        self.finders = list(sys.meta_path)
        self.refused: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        providers = self.providers.get(top)
        if providers and top not in PROJECT and not providers & self.closure:
            self.refused.add(top)
            return None
        for finder in self.finders:
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None

    def find_distributions(self, *args, **kwargs):
        """importlib.metadata asks the meta path too (psycopg reads its version so): only the
        closure's distributions, and the project's own, are installed."""
        for finder in self.finders:
            for dist in getattr(finder, "find_distributions", lambda *a, **k: ())(*args, **kwargs):
                if normalize(dist.metadata["Name"] or "") in self.closure | {"switchboard"}:
                    yield dist

    def invalidate_caches(self) -> None:
        for finder in self.finders:
            if hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()


def main() -> None:
    finder = RuntimeOnly({normalize(n) for n in json.loads(sys.argv[1])})
    sys.meta_path[:] = [finder]
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

    import django

    django.setup()
    # The server as `make run` starts it (uvicorn with uvloop, httptools and websockets), then both
    # gRPC backends ahead of the fake servers, so a missing dependency shows in the backends' import.
    import uvicorn.loops.uvloop  # noqa: F401
    import uvicorn.protocols.http.httptools_impl  # noqa: F401
    import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401

    import inference.backends.aios_grpc  # noqa: F401
    import inference.backends.orgllm_grpc  # noqa: F401
    import webapp.asgi  # noqa: F401
    from inference.backends.base import ChatRequest
    from inference.backends.factory import backend_for
    from tests.support.fake_grpc import FakeGrpcServer

    assert Path(sys.modules["inference"].__file__).is_relative_to(ROOT)
    server = FakeGrpcServer().start()
    answers = {}
    try:
        for backend_type, config in [("aios_grpc", {"target": server.target, "block_id": "b1"}),
                                     ("orgllm_grpc", {"target": server.target, "model_id": "m"})]:
            backend = backend_for(block_id=f"runtime-{backend_type}", backend_type=backend_type, config=config)
            request = ChatRequest(model=f"runtime-{backend_type}",
                                  messages=[{"role": "user", "content": "over the api"}])
            reply = asyncio.run(backend.complete(request))
            answers[backend_type] = [backend.run_inference({"text": "seed example"}, session_id="s"),
                                     reply["choices"][0]["message"]["content"]]
    finally:
        server.stop()
    print(json.dumps({"answers": answers, "refused": sorted(finder.refused),
                      "protobuf": sys.modules["google.protobuf"].__version__}))


if __name__ == "__main__":
    main()
