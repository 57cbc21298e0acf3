# The seed's "Creating and Registering a Custom LLM Model", steps 2 to 4 in one script (step 1 is the
# LLMInferenceAPI interface itself). Step 3's import of ReverseTextLLM is the class step 2 defines.
import os

from inference.sdk import LLMInferenceAPI
from typing import Dict

class ReverseTextLLM(LLMInferenceAPI):
    def run_inference(self, input_data: Dict) -> str:
        text = input_data.get("text", "")
        return text[::-1]  # Reverse the input text

    def check_execute(self, query: dict):
        return True, {"status": "Ready"}

    def get_current_estimates(self):
        return True, {"estimated_latency": "1ms"}

from inference.sdk import KnownLLMs

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
