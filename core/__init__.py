"""ComfyUI-free core of Diffusers Presets.

Nothing in this package imports ComfyUI. Heavy libraries (torch, diffusers, transformers)
are imported inside functions so that importing the node pack stays fast.
"""
