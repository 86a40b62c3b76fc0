"""ComfyUI node classes (V1 style). Each is a thin door onto ``core``.

Importing this package is cheap: node modules import torch/diffusers only inside their
functions. Inside ComfyUI the ComfyUI host is installed so the core uses ComfyUI's folders,
progress bar and interrupt.
"""

from .api_io import ImagesApiInput, ImagesApiOutput
from .comfy_host import install_if_in_comfyui
from .fixed_sampler import FixedSampler
from .flux_redux import FluxRedux
from .image_edit import ImageEdit
from .lora_loader import CivitaiLoraLoader
from .preset_loader import PresetLoader
from .vram_profile import VramProfile

install_if_in_comfyui()

_NODES = (PresetLoader, VramProfile, CivitaiLoraLoader, FixedSampler, FluxRedux, ImageEdit, ImagesApiInput,
          ImagesApiOutput)

NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in _NODES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.__name__: cls.TITLE for cls in _NODES}
