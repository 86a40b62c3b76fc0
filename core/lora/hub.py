"""LoRA files on the Hugging Face Hub, fetched by ``huggingface_hub`` itself: its token (``hf auth
login`` or ``HF_TOKEN``), its cache (shared with every other Hub user on the machine), its
etag/sha checks and its offline mode (``HF_HUB_OFFLINE``). Its progress bar is redrawn as our
byte progress (host bar and log lines) instead of a tqdm line."""

from __future__ import annotations

import inspect
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..civitai.air import hf_endpoint
from ..civitai.download import ByteProgress, payload_problem
from ..errors import PresetsError
from ..families._loading import hf_download_command

_SHA256 = re.compile(r"[0-9a-f]{64}")


def hub_lora_file(repo_id: str, filename: str, revision: str) -> Path:
    """The local path of ``filename`` in ``repo_id``@``revision``, downloaded into the hub cache
    if it is not there yet. Every failure is a :class:`PresetsError`."""
    from huggingface_hub import constants, errors, hf_hub_download

    label = f"the Hugging Face file {repo_id}/{filename}" + (f"@{revision}" if revision != "main" else "")
    command = hf_download_command(repo_id, revision if revision != "main" else None, filename)
    login = "log in with `hf auth login` (or set HF_TOKEN)"
    options: dict[str, Any] = {}
    if "tqdm_class" in inspect.signature(hf_hub_download).parameters:  # older releases draw their own bar
        options["tqdm_class"] = _bar_class(ByteProgress(PurePosixPath(filename).name))
    try:
        path = Path(hf_hub_download(repo_id, filename, revision=revision, endpoint=hf_endpoint(), **options))
    except errors.LocalEntryNotFoundError:
        if constants.is_offline_mode():
            raise PresetsError("lora_not_found", f"{label} is not in the local Hugging Face cache "
                               f"({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set.",
                               f"download it with {command} while online, then run again.") from None
        raise PresetsError("download_failed", f"cannot reach Hugging Face ({hf_endpoint()}) for {label}, and it "
                           "is not in the local cache: this machine looks offline.",
                           f"connect to the network and run again, or download it with {command}.") from None
    except errors.GatedRepoError:
        raise PresetsError("download_failed", f"{label} is in a gated repository.",
                           f"accept its conditions on {hf_endpoint()}/{repo_id}, {login}, then run again.") from None
    except errors.RepositoryNotFoundError:
        raise PresetsError("lora_not_found", f"Hugging Face has no repository {repo_id} (or it is private).",
                           f"check the repository id; for a private repository {login}.") from None
    except errors.RevisionNotFoundError:
        raise PresetsError("lora_not_found", f"the repository {repo_id} has no revision {revision!r}.",
                           "check the revision (branch, tag or commit) in the reference.") from None
    except errors.EntryNotFoundError:
        raise PresetsError("lora_not_found", f"the repository {repo_id} has no file {filename!r} at {revision}.",
                           "check the file path in the reference.") from None
    except (errors.HfHubHTTPError, OSError) as exc:
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise PresetsError("download_failed", f"{label} could not be downloaded: {text[:300]}",
                           f"try again later, or download it with {command}.") from None
    with open(path, "rb") as handle:
        problem = payload_problem(handle.read(16))
    if problem is not None:
        raise PresetsError("lora_invalid", f"{label} is not a safetensors file ({problem}).",
                           "point the reference at a .safetensors LoRA.")
    return path


def hub_sha256(path: Path) -> str:
    """The SHA256 the hub already knows: an LFS file's blob is named after it. Empty otherwise."""
    name = path.resolve().name
    return name if _SHA256.fullmatch(name) else ""


def _bar_class(progress: ByteProgress) -> type:
    """A tqdm class for ``hf_hub_download`` that draws nothing and feeds ``progress``."""
    from tqdm.std import tqdm

    class HubProgress(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "disable": True})
            self.done = progress.done = int(kwargs.get("initial") or 0)  # a resume starts there
            self.size = kwargs.get("total")

        def update(self, n: float = 1) -> None:
            self.done += int(n or 0)
            progress.update(self.done, self.size)

        def close(self) -> None:
            if self.done:
                progress.update(self.done, self.size, final=True)
                self.done = 0
            super().close()

    return HubProgress
