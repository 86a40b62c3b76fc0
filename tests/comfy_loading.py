"""Python source that loads the pack the way ComfyUI does (contract §1.1: by file path, under
the path as module name with "." replaced by "_x_"), for scripts run in a fresh interpreter.
After it runs, ``pack`` is the loaded module and ``pack_name`` its name in ``sys.modules``."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOAD_PACK = f"""
import importlib.util, sys
pack_path = {str(ROOT)!r}
pack_name = pack_path.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(pack_name, pack_path + "/__init__.py",
                                              submodule_search_locations=[pack_path])
pack = importlib.util.module_from_spec(spec)
sys.modules[pack_name] = pack
spec.loader.exec_module(pack)
"""
