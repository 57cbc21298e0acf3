"""The suite's own rules: nothing is skipped (a missing service, binary or route must fail loudly), and
every stand-in server and launcher lives once, in tests/support."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SKIPPING = {"skip", "skipif", "importorskip", "xfail"}


def _python_files() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def test_no_test_module_or_test_can_skip_itself():
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            # pytest.skip(...), pytest.importorskip(...), pytest.mark.skip/skipif/xfail
            if isinstance(node, ast.Attribute) and node.attr in SKIPPING:
                found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno} uses {node.attr}")
    assert found == []


def test_free_port_and_the_fake_servers_are_defined_once_in_tests_support():
    defined: dict[str, list[str]] = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in (
                    "free_port", "FakeUpstream", "FakeEngine", "FakeGrpcServer", "start_gateway", "wait_for_port"):
                defined.setdefault(node.name, []).append(str(path.relative_to(TESTS.parent)))
    assert defined == {
        "free_port": ["tests/support/ports.py"],
        "wait_for_port": ["tests/support/ports.py"],
        "FakeUpstream": ["tests/support/fake_upstream.py"],
        "FakeEngine": ["tests/support/fake_sglang.py"],
        "FakeGrpcServer": ["tests/support/fake_grpc.py"],
        "start_gateway": ["tests/support/live_server.py"],
    }
