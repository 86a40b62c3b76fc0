"""Stand-in for ComfyUI's folder_paths: a models folder with ComfyUI's folder names."""

import os

models_dir = os.environ["STUB_COMFY_MODELS"]
folder_names_and_paths = {name: ([os.path.join(models_dir, name)], set())
                          for name in ("checkpoints", "loras", "diffusers", "clip_vision", "style_models")}


def get_folder_paths(folder_name):
    return list(folder_names_and_paths[folder_name][0])


def get_filename_list(folder_name):
    names = set()
    for root in get_folder_paths(folder_name):
        for folder, _dirs, files in os.walk(root):
            names.update(os.path.relpath(os.path.join(folder, name), root) for name in files)
    return sorted(names)
