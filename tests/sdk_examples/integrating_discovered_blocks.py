# The seed's "Integrating Discovered Models with KnownLLMs".
import os

from inference.sdk import BlocksQueryManager, KnownLLMs

# Initialize managers
llm_registry = KnownLLMs(
    base_url=os.environ["SWITCHBOARD_URL"],
    adhoc_inference_url=os.environ["SWITCHBOARD_URL"]
)
query_manager = BlocksQueryManager(base_url=os.environ["SWITCHBOARD_URL"])

# Discover models with a filter query
conditions = [{"variable": "tags", "operator": "IN", "value": ["summarization"]}]
discovered_blocks = query_manager.filter_data(conditions)

# Register the discovered blocks
for block in discovered_blocks:
    llm_registry.add_custom_llm(name=block.id, block_data=block.to_dict())

# Run inference using the discovered model
response = llm_registry.run_ai_inference(
    name=discovered_blocks[0].id,
    input_data={"prompts": [{"role": "user", "content": "Summarize the following paragraph..."}]},
    session_id="session-123",
    frame_ptr=b""
)

print(response)
