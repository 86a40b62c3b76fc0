"""Trigger words into the prompt.

Trigger words are appended to the user's prompt. Where the family's text encoder allows weighting
(SDXL's two CLIP encoders, through compel) each LoRA's ``trigger_weight`` scales its words; the
user's text is passed to compel as a literal fragment, never parsed as compel syntax, so the prompt
means what it says. Elsewhere the words are plain text, and when the prompt would overflow the
text encoder, the end of the user's text is cut so that the trigger words survive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from ..handle import LoraSpec

log = logging.getLogger(__name__)

# The tokenizer that carries the main conditioning, where it is not `tokenizer` (Flux: T5).
_MAIN_TOKENIZER = {"flux": "tokenizer_2"}
_MAX_TOKENS = 512  # max_sequence_length default of the T5/Qwen families


def clean_triggers(words: Iterable[str]) -> tuple[str, ...]:
    """Trimmed, non-empty, de-duplicated (case-insensitively) trigger groups, in order. A group
    may itself be a comma list ("blue eyes, black hair"): it stays one group."""
    seen: set[str] = set()
    groups = []
    for word in words:
        text = " ".join(str(word).split()).strip(" ,")
        if text and text.lower() not in seen:
            seen.add(text.lower())
            groups.append(text)
    return tuple(groups)


def trigger_groups(loras: Iterable[LoraSpec]) -> list[tuple[str, float]]:
    """(group, weight) over the whole stack; a group shared by two LoRAs appears once."""
    seen: set[str] = set()
    groups = []
    for spec in loras:
        for group in spec.triggers:
            if group.lower() not in seen:
                seen.add(group.lower())
                groups.append((group, spec.trigger_weight))
    return groups


def join(parts: Iterable[str]) -> str:
    return ", ".join(part.strip() for part in parts if part and part.strip())


@dataclass(frozen=True)
class PromptPlan:
    prompt: str  # the text prompt (also recorded in metadata when conditioning replaces it)
    negative_prompt: Optional[str]
    conditioning: Optional[dict[str, Any]] = None  # compel embeds for the pipeline call


def plan_prompt(pipe: Any, family_name: str, prompt: str, negative: Optional[str], loras: tuple[LoraSpec, ...],
                clip_skip: Optional[int] = None) -> PromptPlan:
    """The prompt (or compel conditioning) for one generation with ``loras`` active. Call it
    after the adapters are set: text-encoder LoRAs change the embeddings."""
    if negative is not None:  # None: the family takes no negative prompt
        negative = join([negative, *(spec.negative_prompt for spec in loras)])
    groups = trigger_groups(loras)
    if not groups:
        return PromptPlan(prompt, negative)
    weighted = any(weight != 1.0 for _, weight in groups)
    if weighted and family_name == "sdxl":
        if clip_skip is None:
            parts = [(prompt, 1.0), *groups] if prompt.strip() else groups
            # Commas as in the plain-text prompt; CLIP tokenizes word by word, so the fragments give
            # the same tokens as the joined text.
            fragments = [(f"{text.strip()}," if i < len(parts) - 1 else text.strip(), weight)
                         for i, (text, weight) in enumerate(parts)]
            conditioning = sdxl_conditioning(pipe, fragments, negative or "")
            return PromptPlan(join(text for text, _ in parts), negative, conditioning)
        log.info("trigger_weight is not applied: compel cannot reproduce clip_skip=%s; trigger words are "
                 "added as plain text", clip_skip)
    elif weighted:
        log.info("the %s text encoder takes no prompt weights; trigger words are added as plain text", family_name)
    return PromptPlan(fit_prompt(pipe, family_name, prompt, join(g for g, _ in groups)), negative)


def fit_prompt(pipe: Any, family_name: str, prompt: str, triggers: str) -> str:
    """``prompt, triggers``, cutting the end of ``prompt`` when the whole would overflow the
    family's main text encoder, so the trigger words are never the part that is truncated."""
    text = join([prompt, triggers])
    tokenizer = getattr(pipe, _MAIN_TOKENIZER.get(family_name, "tokenizer"), None)
    if tokenizer is None or not prompt.strip():
        return text
    limit = min(int(getattr(tokenizer, "model_max_length", _MAX_TOKENS) or _MAX_TOKENS), _MAX_TOKENS)

    def length(candidate: str) -> int:
        return len(tokenizer(candidate, truncation=False).input_ids)

    if length(text) <= limit:
        return text
    words = prompt.split()
    low, high = 0, len(words)  # the longest prefix of the prompt that still fits
    while low < high:
        middle = (low + high + 1) // 2
        if length(join([" ".join(words[:middle]), triggers])) <= limit:
            low = middle
        else:
            high = middle - 1
    fitted = join([" ".join(words[:low]), triggers])
    log.warning("the prompt is longer than the %s text encoder's %d tokens: cut it after %d of %d words so the "
                "trigger words stay (%s)", family_name, limit, low, len(words), fitted)
    return fitted


def sdxl_conditioning(pipe: Any, fragments: list[tuple[str, float]], negative: str) -> dict[str, Any]:
    """compel embeddings for SDXL from literal (text, weight) fragments. Long prompts are
    chunked (compel's long-prompt handling), never truncated."""
    import torch
    from compel import Compel, CompelForSDXL

    compel = CompelForSDXL(pipe, device=str(pipe.device))
    texts = [text for text, _ in fragments]
    weights = [weight for _, weight in fragments]

    def encode(encoder: Compel, parts: list[str], part_weights: list[float]) -> Any:
        return encoder.conditioning_provider.get_embeddings_for_weighted_prompt_fragments(
            text_batch=[parts], fragment_weights_batch=[part_weights], device=encoder.device)

    with torch.no_grad():
        halves, negative_halves = [], []
        for encoder in (compel.compel_1, compel.compel_2):
            positive_part, negative_part = encoder.pad_conditioning_tensors_to_same_length(
                [encode(encoder, texts, weights), encode(encoder, [negative], [1.0])])
            halves.append(positive_part)
            negative_halves.append(negative_part)
        provider = compel.compel_2.conditioning_provider
        pooled = provider.get_pooled_embeddings([" ".join(texts)], device=compel.compel_2.device)
        negative_pooled = provider.get_pooled_embeddings([negative], device=compel.compel_2.device)
        embeds, negative_embeds = torch.cat(halves, dim=-1), torch.cat(negative_halves, dim=-1)
    if not negative and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        # What the pipeline itself does for an empty negative prompt.
        negative_embeds, negative_pooled = torch.zeros_like(negative_embeds), torch.zeros_like(negative_pooled)
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled, "negative_prompt_embeds": negative_embeds,
            "negative_pooled_prompt_embeds": negative_pooled}
