# The seed's "Registering and Running Inference on LLM Models": Initialization, Registering a Remote
# Model by ID, Registering a Custom LLM, Listing and Removing, Querying, Running Inference, Estimating,
# Retrieving Searchable Metadata.
import os

from inference.sdk import KnownLLMs

llm_manager = KnownLLMs(
    base_url=os.environ["SWITCHBOARD_URL"],
    adhoc_inference_url=os.environ["SWITCHBOARD_URL"]
)

llm_manager.add_llm(name="my-llm", block_id="llm-block-123")

custom_block_data = {
    "id": "custom-llm-block",
    "blockMetadata": {
        "description": "Custom summarization model",
        "tags": ["summary", "text"]
    },
    "inputProtocols": ["text/plain"],
    "outputProtocols": ["text/plain"]
}

llm_manager.add_custom_llm("my-llm", block_data=custom_block_data)

from inference.sdk import OpenAIInferenceAPI

openai_backend = OpenAIInferenceAPI(api_key=os.environ["SWITCHBOARD_API_KEY"], model="gpt-4")

llm_manager.create_custom_llm_block(
    id="openai-wrapper",
    description="OpenAI GPT-4 wrapper",
    tags=["openai", "chat"],
    input_protocols=["text/plain"],
    output_protocols=["text/plain"],
    block_inference_object=openai_backend
)

# List all registered LLMs
for name, block in llm_manager.list_llms().items():
    print(name, block.to_dict())

# Remove an LLM from the registry
llm_manager.remove_llm("my-llm")

query = {"tags": ["qa"], "inputProtocols": ["text/plain"]}
results = llm_manager.query_blocks(query)

for block in results:
    print(block.id, block.blockMetadata.description)

response = llm_manager.run_ai_inference(
    name="openai-wrapper",
    input_data={
        "prompts": [
            {"role": "user", "content": "What is quantum computing?"}
        ]
    },
    session_id="session-xyz",
    frame_ptr=b""
)

print(response)

result = llm_manager.estimate(
    name="openai-wrapper",
    session_id="session-xyz",
    query={"input_size": 2048}
)

print(result)

searchable_data = llm_manager.get_searchable_representation()

for item in searchable_data:
    print(item["id"], item["description"], item["tags"])
