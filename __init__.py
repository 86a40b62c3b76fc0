"""Diffusers Presets: ComfyUI nodes that run Hugging Face diffusers pipelines from presets.

ComfyUI imports this file by path; everything inside the pack uses relative imports.
Importing it must stay cheap: torch, diffusers and transformers load when a node first runs.
"""

import sys

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

# Inside ComfyUI (its PromptServer exists): serve the OpenAI-compatible Images API on its app.
if getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None) is not None:
    from .runner.server.openai_comfy import mount_in_comfyui

    mount_in_comfyui()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
