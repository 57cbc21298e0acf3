"""Layers point one way (issue 9): registry -> registry.tenancy -> inference.backends ->
inference.workers -> transports and features -> webapp.

import-linter checks the module-level imports against the contracts in pyproject.toml; an
import inside a function would slip past it (and hide a cycle), so this test forbids those
for the project's own modules, apart from the few listed below with their reason.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("registry", "inference", "webapp")

# Files whose functions may import the project's modules, and why (never to dodge a cycle).
LAZY_ON_PURPOSE = {
    # The SDK's in-process mode: its module imports Django's models, which need django.setup() first,
    # and a remote caller runs the SDK in a plain script with no Django (see the file's docstring).
    "inference/sdk/modes.py",
}


def _own_module(node: ast.Import | ast.ImportFrom) -> str | None:
    if isinstance(node, ast.ImportFrom):
        names = [node.module or ""] if node.level == 0 else ["." * node.level]
    else:
        names = [alias.name for alias in node.names]
    for name in names:
        if name.startswith(".") or name.split(".")[0] in PACKAGES:
            return name
    return None


def _parse(source: str, filename: str) -> ast.Module:
    """ast.parse, again if another thread's parse disturbed it: on CPython 3.11 the AST converter's
    recursion counter is shared by all threads, and any thread formatting a traceback parses source
    (traceback's caret anchors), so a concurrent parse can fail with "AST constructor recursion depth
    mismatch" although the file is fine. The file is parsed for real either way."""
    for _ in range(3):
        try:
            return ast.parse(source, filename=filename)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc):
                raise
            error = exc
    raise error


def _in_function_imports(path: Path) -> list[str]:
    tree = _parse(path.read_text(), str(path))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        # An AppConfig.ready() importing its signal handlers is Django's way of wiring them.
        if path.name == "apps.py" and function.name == "ready":
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import | ast.ImportFrom) and (module := _own_module(node)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module} inside {function.name}()")
    return found


def _project_files() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            if "migrations" not in path.parts and "grpc_gen" not in path.parts]


def test_no_module_imports_the_project_inside_a_function():
    files = _project_files()
    assert len(files) > 50  # the walk found the packages
    found = [hit for path in files if str(path.relative_to(ROOT)) not in LAZY_ON_PURPOSE
             for hit in _in_function_imports(path)]
    assert found == []


def test_the_files_allowed_lazy_imports_still_need_them():
    # A listed file that no longer imports lazily must leave the list, so the list never grows stale.
    for name in LAZY_ON_PURPOSE:
        assert _in_function_imports(ROOT / name), name


def test_no_project_import_is_wrapped_in_try_except_import_error():
    found = []
    for path in _project_files():
        for node in ast.walk(_parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Try):
                continue
            catches = {getattr(h.type, "id", None) for h in node.handlers} | {
                getattr(elt, "id", None) for h in node.handlers if isinstance(h.type, ast.Tuple) for elt in h.type.elts}
            if {"ImportError", "ModuleNotFoundError"} & catches:
                found += [f"{path.relative_to(ROOT)}:{inner.lineno}" for stmt in node.body for inner in ast.walk(stmt)
                          if isinstance(inner, ast.Import | ast.ImportFrom) and _own_module(inner)]
    assert found == []


@pytest.mark.slow
def test_the_layers_contract_is_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


# Async code reaches the ORM one way (registry/asyncdb.py): these names are the other ways.
ORM_HELPER = "registry/asyncdb.py"
OTHER_WAYS_TO_THE_ORM = {"sync_to_async", "database_sync_to_async", "SyncToAsync"}
# Django's async QuerySet, Manager and Model methods (each runs on asgiref's one shared thread).
DJANGO_ASYNC_ORM = {
    "aaggregate", "abulk_create", "abulk_update", "acontains", "acount", "acreate", "adelete", "aearliest",
    "aexists", "aexplain", "afirst", "aget", "aget_or_create", "ain_bulk", "aiterator", "alast", "alatest",
    "arefresh_from_db", "asave", "aupdate", "aupdate_or_create",
}


def _other_ways_to_the_orm(source: str, label: str) -> list[str]:
    found = []
    for node in ast.walk(_parse(source, label)):
        if isinstance(node, ast.Name) and node.id in OTHER_WAYS_TO_THE_ORM:
            name = node.id
        elif isinstance(node, ast.Attribute) and node.attr in OTHER_WAYS_TO_THE_ORM | DJANGO_ASYNC_ORM:
            name = node.attr
        elif isinstance(node, ast.ImportFrom):
            name = next((a.name for a in node.names if a.name in OTHER_WAYS_TO_THE_ORM), None)
        else:
            continue
        if name:
            found.append(f"{label}:{node.lineno} uses {name}")
    return found


def test_async_code_reaches_the_orm_only_through_the_one_helper():
    found = [hit for path in _project_files() if (label := str(path.relative_to(ROOT))) != ORM_HELPER
             for hit in _other_ways_to_the_orm(path.read_text(), label)]
    assert found == []


def test_the_orm_check_recognises_each_other_way():
    # The check above would pass vacuously if it could not see what it looks for.
    sample = ("from asgiref.sync import sync_to_async\nfrom channels.db import database_sync_to_async\n"
              "async def f(Block):\n    return await Block.objects.aget(pk=1)\n")
    uses = [hit.rsplit(" uses ", 1)[1] for hit in _other_ways_to_the_orm(sample, "sample.py")]
    assert uses == ["sync_to_async", "database_sync_to_async", "aget"]
