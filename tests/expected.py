"""Values the issue fixes, written down once for every test that checks them."""

SHIPPED = {
    # id: (family, steps, cfg, sampler)
    "sdxl/illustrious": ("sdxl", 20, 7.0, "euler_a"),
    "chroma/flash": ("chroma", 4, 4.0, None),
    "flux/dev": ("flux", 50, 3.5, None),
    "flux/schnell": ("flux", 4, 0.0, None),
    "zimage/turbo": ("zimage", 8, 0.0, None),
    "anima/preview": ("anima", 32, 4.0, None),
}

# The scheduler class each shipped preset's sampler puts on the tiny pipeline (whose own default is
# EulerDiscreteScheduler for SDXL and FlowMatchEulerDiscreteScheduler for the flow-matching families).
SCHEDULER_CLASS = {
    "sdxl/illustrious": "EulerAncestralDiscreteScheduler",
    "chroma/flash": "FlowMatchEulerDiscreteScheduler",
    "flux/dev": "FlowMatchEulerDiscreteScheduler",
    "flux/schnell": "FlowMatchEulerDiscreteScheduler",
    "zimage/turbo": "FlowMatchEulerDiscreteScheduler",
    "anima/preview": "FlowMatchEulerDiscreteScheduler",
}
