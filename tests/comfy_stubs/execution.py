"""Stand-in for ComfyUI's execution module: ``validate_prompt`` (async, contract §3.1) accepts
a prompt whose nodes all exist and returns its output nodes."""

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
known_nodes = {}  # class_type -> class; the test fills it with the pack's nodes


async def validate_prompt(prompt_id, prompt, partial_execution_list):
    for node_id, node in prompt.items():
        if node.get("class_type") not in known_nodes:
            error = {"type": "invalid_prompt", "message": f"Cannot execute because node {node.get('class_type')} "
                     "does not exist.", "details": f"Node ID '#{node_id}'", "extra_info": {}}
            return False, error, [], {}
    outputs = [node_id for node_id, node in prompt.items()
               if getattr(known_nodes[node["class_type"]], "OUTPUT_NODE", False)]
    return True, None, outputs, {}
