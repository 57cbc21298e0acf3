"""The seed's Python SDK, every name from one place:

    from inference.sdk import KnownLLMs, BlocksQueryManager, OpenAIInferenceAPI

Remote (a `base_url`): plain HTTP to a Switchboard server with `Authorization: Bearer <api_key>`
(default $SWITCHBOARD_API_KEY); needs the standard library (grpc for the gRPC APIs), never Django
settings. In-process (no base_url): the registry and the blocks of this process's database
(in_process.py, set up on first use). One module per concern:

    blocks.py          Block, BlocksQueryManager          known.py      KnownLLMs, KnownLLMOptimizers
    inference.py       OpenAIInferenceAPI, remote runs    grpc_inference.py  AIOSInferenceAPI, OrgLLMInferenceAPI
    orgs.py            OrgLLMsManager                      estimator.py  AIOSEstimatorClient
    http.py            the HTTP calls, RegistryError       remote_registry.py, in_process.py, modes.py: the two modes
    runtime.py         Runtime, VMError (the low-level Runtime, docs/runtime.md)
"""

from inference.backends.base import LLMInferenceAPI
from inference.backends.examples import ReverseTextLLM
from inference.sdk.blocks import Block, BlocksQueryManager, filter_payload, normalize_block_data
from inference.sdk.estimator import AIOSEstimatorClient
from inference.sdk.grpc_inference import AIOSInferenceAPI, OrgLLMInferenceAPI
from inference.sdk.http import RegistryError, SwitchboardError
from inference.sdk.inference import OpenAIInferenceAPI
from inference.sdk.known import KnownLLMOptimizers, KnownLLMs
from inference.sdk.orgs import OrgLLMsManager
from inference.sdk.runtime import Runtime, VMError

__all__ = [
    "AIOSEstimatorClient",
    "AIOSInferenceAPI",
    "Block",
    "BlocksQueryManager",
    "KnownLLMOptimizers",
    "KnownLLMs",
    "LLMInferenceAPI",
    "OpenAIInferenceAPI",
    "OrgLLMInferenceAPI",
    "OrgLLMsManager",
    "RegistryError",
    "ReverseTextLLM",
    "Runtime",
    "SwitchboardError",
    "VMError",
    "filter_payload",
    "normalize_block_data",
]
