# The seed's "Discovering Models Using Block Query Manager": Initialization, a filter-based query, a
# similarity-based search with a ranking policy.
import os

from inference.sdk import BlocksQueryManager

query_manager = BlocksQueryManager(base_url=os.environ["SWITCHBOARD_URL"])

conditions = [
    {"variable": "tags", "operator": "IN", "value": ["qa"]},
    {"variable": "inputProtocols", "operator": "==", "value": "text/plain"}
]

blocks = query_manager.filter_data(conditions)

for block in blocks:
    print(block.id, block.blockMetadata.description)

conditions = [
    {"variable": "task_description", "operator": "LIKE", "value": "summarize research paper"}
]

policy_code_path = "policies/similarity_policy.zip"

blocks = query_manager.similarity_search(
    conditions=conditions,
    policy_code_path=policy_code_path
)

for block in blocks:
    print(block.id, block.blockMetadata.description)
