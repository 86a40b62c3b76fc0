"""Entry point of ``python -m runner``."""

import sys

if __package__ in (None, "", "runner"):
    from runner import load_pack

    load_pack()
    from diffusers_presets.runner.cli import main
else:
    from .cli import main

sys.exit(main())
