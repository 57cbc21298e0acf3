# The seed's "Creating and Registering a Custom LLM Model", steps 3 and 4 as written: ReverseTextLLM
# imported from the SDK.
import os

from inference.sdk import KnownLLMs
from inference.sdk import ReverseTextLLM

# Initialize KnownLLMs
llm_manager = KnownLLMs(
    base_url=os.environ["SWITCHBOARD_URL"],
    adhoc_inference_url=os.environ["SWITCHBOARD_URL"]
)

# Create the custom block
custom_backend = ReverseTextLLM()

llm_manager.create_custom_llm_block(
    id="reverse-llm",
    description="Reverses the input text",
    tags=["test", "reverse"],
    input_protocols=["text/plain"],
    output_protocols=["text/plain"],
    block_inference_object=custom_backend
)

result = llm_manager.run_ai_inference(
    name="reverse-llm",
    input_data={"text": "hello world"},
    session_id="session-001",
    frame_ptr=b""
)

print(result)  # Output: "dlrow olleh"
