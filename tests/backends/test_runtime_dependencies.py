"""The runtime dependencies are complete: the gRPC backends (and the server `make run` starts) work
with nothing but [project.dependencies] and what they require.

Building a fresh virtualenv from `pip install .` takes minutes (and a network), so the test does the
honest cheap equivalent: it walks the installed distributions' `Requires-Dist` graph from
pyproject's [project.dependencies] (extras such as psycopg[binary] followed, environment markers
evaluated, no optional extra of ours: `llm` and `test` are left out), then runs
tests/backends/runtime_only.py in a fresh interpreter that refuses to import any top-level module
no distribution of that closure provides, as the missing package would. There it loads the server
and runs both gRPC backends against real gRPC servers on loopback. `protobuf` came only with the
`test` extra (via grpcio-tools), so the generated stubs failed with ModuleNotFoundError under
`make run`: that is what this catches.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def runtime_closure() -> set[str]:
    """Canonical names of the distributions that `pip install .` (no extras) would install."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pending = [Requirement(spec) for spec in declared]
    seen: dict[str, set[str]] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            raise AssertionError(f"{name} is a runtime dependency but is not installed") from None
        for spec in requires:
            child = Requirement(spec)
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in extras | {""}):
                pending.append(child)
    return set(seen)


def test_protobuf_is_a_pinned_runtime_dependency_matching_the_generated_stubs():
    closure = runtime_closure()
    assert "protobuf" in closure
    assert "grpcio-tools" not in closure and "pytest" not in closure  # test-only tools stay out
    declared = [Requirement(s) for s in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    pins = {canonicalize_name(r.name): str(r.specifier) for r in declared}
    installed = distribution("protobuf").version
    assert pins["protobuf"] == f"=={installed}"
    # grpcio-tools (`make proto`) generates stubs that refuse an older protobuf runtime, or a newer major.
    stubs = (ROOT / "inference" / "grpc_gen" / "aios_pb2.py").read_text()
    generated = next(line.split(":")[1].strip() for line in stubs.splitlines() if "Protobuf Python Version" in line)
    as_tuple = [int(p) for p in installed.split(".")[:3]]
    assert [int(p) for p in generated.split(".")] <= as_tuple and as_tuple[0] == int(generated.split(".")[0])


@pytest.mark.slow
def test_grpc_backends_run_with_only_the_runtime_dependencies():
    closure = runtime_closure()
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "backends" / "runtime_only.py"),
                             json.dumps(sorted(closure))], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["answers"] == {"aios_grpc": ["SEED EXAMPLE", "OVER THE API"],
                                 "orgllm_grpc": ["SEED EXAMPLE", "OVER THE API"]}
    assert report["protobuf"] == distribution("protobuf").version
