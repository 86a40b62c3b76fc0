"""Diffusers Presets: ComfyUI nodes that run Hugging Face diffusers pipelines from presets.

ComfyUI imports this file by path; everything inside the pack uses relative imports.
Importing it must stay cheap: torch, diffusers and transformers load when a node first runs.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
