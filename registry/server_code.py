"""What a block may make the server run or load: a `python` class, a llama.cpp model and its memory.

Tenants choose neither code nor memory (docs/security.md):
- A `python` block runs its class inside the server process, so only the operator may create one,
  and even the operator's class must come from a module under settings.PYTHON_BACKEND_MODULES.
  The dotted path is checked as a string, before anything is imported (importing a module runs it:
  `this.s` printed the Zen of Python into the log). inference/backends/python_class.py checks
  again when it loads a stored block, since stored blocks may predate the rule.
- A `llamacpp` block's `model_path`, `n_ctx` and `n_threads` decide what the server loads and how
  much memory it keeps: only the operator sets them, and `n_ctx` stays under
  settings.LLAMACPP_MAX_CONTEXT. A tenant may still register a llamacpp block on the bundled
  model with the server's defaults: it shares the process's one instance of that file.

These functions return why a configuration is refused (a message naming the config key), or None;
registry/backend_rules.py turns that into a 400 at registration, the backends into an error at load.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

# Python identifiers joined by dots, at least a module and a name; no dunder segment
# (`__builtins__`, `__loader__`, ...) reaches past the module's own classes.
_DOTTED_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
MAX_CLASS_PATH = 300
LLAMACPP_OPERATOR_KEYS = ("model_path", "n_ctx", "n_threads")
# More threads than this is a typo, not a machine.
LLAMACPP_MAX_THREADS = 256
# Below this a chat template alone does not fit.
LLAMACPP_MIN_CONTEXT = 64


def python_module_allowed(module: str) -> bool:
    """Whether `module` is one of settings.PYTHON_BACKEND_MODULES or a submodule of one."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in settings.PYTHON_BACKEND_MODULES)


def python_class_refusal(path: Any) -> str | None:
    """Why a `python` block may not load the class at `path`; looks at the string only, imports nothing."""
    if not isinstance(path, str) or not path:
        return 'backend.config.class: needs a dotted path to an LLMInferenceAPI class'
    if len(path) > MAX_CLASS_PATH or not _DOTTED_PATH_RE.fullmatch(path) or "__" in path:
        return "backend.config.class: must be a dotted path of Python identifiers (module.Class)"
    module = path.rsplit(".", 1)[0]
    if not python_module_allowed(module):
        return (f"backend.config.class: {path!r} is not in a module the operator allows for python "
                f"backends (PYTHON_BACKEND_MODULES)")
    return None


def llamacpp_config_refusal(config: dict[str, Any]) -> str | None:
    """Why these llamacpp values may not be used, whoever set them (stored blocks too)."""
    n_ctx = config.get("n_ctx")
    if n_ctx is not None and (isinstance(n_ctx, bool) or not isinstance(n_ctx, int)
                              or not LLAMACPP_MIN_CONTEXT <= n_ctx <= settings.LLAMACPP_MAX_CONTEXT):
        return (f"backend.config.n_ctx: must be an integer from {LLAMACPP_MIN_CONTEXT} to "
                f"{settings.LLAMACPP_MAX_CONTEXT} (LLAMACPP_MAX_CONTEXT)")
    n_threads = config.get("n_threads")
    if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int)
                                  or not 1 <= n_threads <= LLAMACPP_MAX_THREADS):
        return f"backend.config.n_threads: must be an integer from 1 to {LLAMACPP_MAX_THREADS}"
    model_path = config.get("model_path")
    if model_path is not None and (not isinstance(model_path, str) or not model_path.startswith("/")
                                   or "\x00" in model_path):
        return "backend.config.model_path: must be an absolute path to a GGUF file on the server"
    return None


def server_code_refusal(*, backend_type: str, config: dict[str, Any], operator: bool) -> str | None:
    """Why this caller may not store this backend (a `python` class, llama.cpp settings), or None."""
    if backend_type == "python":
        if not operator:
            return ("backend.type: only the server's operator may create python blocks "
                    "(their class runs inside the server)")
        refusal = python_class_refusal(config.get("class"))
        if refusal is None and not isinstance(config.get("kwargs", {}), dict):
            refusal = "backend.config.kwargs: must be an object"
        return refusal
    if backend_type == "llamacpp":
        chosen = [key for key in LLAMACPP_OPERATOR_KEYS if key in config]
        if chosen and not operator:
            return (f"backend.config.{chosen[0]}: only the server's operator may set "
                    f"{', '.join(LLAMACPP_OPERATOR_KEYS)} (a tenant's llamacpp block runs the bundled "
                    "model with the server's settings)")
        return llamacpp_config_refusal(config)
    if backend_type == "embedding":
        # The server's one embedding model: nothing to choose, so nothing to configure.
        unknown = sorted(set(config) - {"timeout_s"})
        if unknown:
            return f"backend.config.{unknown[0]}: the embedding backend takes no configuration (timeout_s only)"
    return None
