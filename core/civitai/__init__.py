"""Civitai access: reference parsing (:mod:`.air`), the REST client (:mod:`.client`) and the
verified, resumable downloader (:mod:`.download`). No module here imports torch or ComfyUI."""
