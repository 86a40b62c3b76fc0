"""Stub V1 nodes for engine conformance tests (modelled on what ComfyUI's own execution tests
exercise). Every call is recorded in ``CALLS`` as ``(class name, kwargs)``."""

from __future__ import annotations

from diffusers_presets.core.host import get_host

CALLS: list[tuple[str, dict]] = []


def calls_of(name: str) -> list[dict]:
    return [kwargs for cls, kwargs in CALLS if cls == name]


class _Recorded:
    FUNCTION = "run"
    CATEGORY = "test"

    def record(self, **kwargs):
        CALLS.append((type(self).__name__, kwargs))


class StubInt(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -100, "max": 100})}}

    RETURN_TYPES = ("INT",)

    def run(self, value):
        self.record(value=value)
        return (value,)


class StubAdd(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0}), "b": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)

    def run(self, a, b):
        self.record(a=a, b=b)
        return (a + b,)


class StubOutput(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",)}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True

    def run(self, value):
        self.record(value=value)
        return {"ui": {"values": [value]}}


class StubListOutput(StubOutput):
    INPUT_IS_LIST = True


class StubSeeded(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}), "value": ("INT",)}}

    RETURN_TYPES = ("INT",)

    def run(self, seed, value):
        self.record(seed=seed, value=value)
        return (seed * 1000 + value,)


class StubIsChanged(_Recorded):
    TOKEN = "a"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}}

    @classmethod
    def IS_CHANGED(cls, value):
        return cls.TOKEN

    RETURN_TYPES = ("INT",)

    def run(self, value):
        self.record(value=value)
        return (value,)


class StubAlwaysChanged(StubIsChanged):
    @classmethod
    def IS_CHANGED(cls, value):
        return float("nan")


class StubList(_Recorded):
    """Outputs ``count`` ints as a list (OUTPUT_IS_LIST)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3})}}

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)

    def run(self, count):
        self.record(count=count)
        return (list(range(count)),)


class StubListSum(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("INT",)}}

    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True

    def run(self, values):
        self.record(values=values)
        return (sum(values),)


class StubLazySwitch(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "switch": ("BOOLEAN",),
                "on_true": ("INT", {"lazy": True}),
                "on_false": ("INT", {"lazy": True}),
            }
        }

    RETURN_TYPES = ("INT",)

    def check_lazy_status(self, switch, on_true=None, on_false=None):
        needed = "on_true" if switch else "on_false"
        return [needed] if (on_true if switch else on_false) is None else []

    def run(self, switch, on_true=None, on_false=None):
        self.record(switch=switch, on_true=on_true, on_false=on_false)
        return (on_true if switch else on_false,)


class StubValidated(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"min": 0, "max": 10})}}

    @classmethod
    def VALIDATE_INPUTS(cls, value):
        return True if value != 13 else "thirteen is unlucky"

    RETURN_TYPES = ("INT",)

    def run(self, value):
        self.record(value=value)
        return (value,)


class StubTyped(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"default": ""}),
                "ratio": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0}),
                "flag": ("BOOLEAN", {"default": False}),
                "mode": (["fast", "slow", "styles/fast.safetensors"],),
                "image": ("IMAGE",),
            },
            "optional": {"extra": ("INT", {"default": 1})},
        }

    RETURN_TYPES = ("STRING",)

    def run(self, **kwargs):
        self.record(**kwargs)
        return (str(kwargs),)


class StubImage(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("IMAGE",)

    def run(self):
        self.record()
        return ("image",)


class StubFail(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)

    def run(self, value):
        self.record(value=value)
        raise ValueError(f"stub failure for {value}")


class StubHidden(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"value": ("INT",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ()
    OUTPUT_NODE = True

    def run(self, value, prompt=None, extra_pnginfo=None, unique_id=None):
        self.record(value=value, prompt=prompt, extra_pnginfo=extra_pnginfo, unique_id=unique_id)
        return {"ui": {"ids": [unique_id]}}


class StubSteps(_Recorded):
    """Reports ``steps`` progress updates through the host; calls ``on_step`` hooks."""

    HOOKS: list = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 3, "min": 1})}}

    RETURN_TYPES = ("INT",)

    def run(self, steps):
        self.record(steps=steps)
        progress = get_host().progress(steps)
        for step in range(1, steps + 1):
            for hook in self.HOOKS:
                hook(step)
            progress.update_absolute(step)
        return (steps,)


class StubInstanceCounter(_Recorded):
    created = 0

    def __init__(self):
        type(self).created += 1

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)

    def run(self, value):
        self.record(value=value)
        return (value,)


class StubAsync(_Recorded):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ("INT",)

    async def run(self, value):
        self.record(value=value)
        return (value * 2,)


def node(class_type, **inputs):
    """An API-format prompt node."""
    return {"class_type": class_type, "inputs": inputs}


STUB_NODES = {
    name: obj
    for name, obj in dict(globals()).items()
    if name.startswith("Stub") and isinstance(obj, type)
}
