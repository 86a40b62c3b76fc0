"""Tiny tokenizers built in memory for the tiny test pipelines.

transformers 5 tokenizers take their vocabulary (and merges) as constructor arguments, so no
hub files, sentencepiece or protobuf are needed. The vocabularies are character-level, which
keeps them small while still giving different token ids (and so different images) for
different prompts.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# Sizes the tiny text encoders are configured with (see the family modules).
CLIP_VOCAB_SIZE = 516
T5_VOCAB_SIZE = 192
QWEN_VOCAB_SIZE = 259

# ChatML, enough for Z-Image's and Anima's `apply_chat_template` calls.
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@lru_cache(maxsize=1)
def _byte_alphabet() -> tuple[str, ...]:
    """The 256 characters GPT-2 style byte-level BPE maps the bytes 0..255 to, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + len(mapping) - len(printable))
    return tuple(mapping[byte] for byte in range(256))


def clip_tokenizer() -> Any:
    """CLIP BPE tokenizer: 2 specials + byte alphabet + the alphabet with ``</w>`` + 2 merges
    = 516 tokens, ``model_max_length`` 77 (SDXL pads to it)."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in _byte_alphabet():
        vocab[char] = len(vocab)
    for char in _byte_alphabet():
        vocab[char + "</w>"] = len(vocab)
    merges = [("t", "h"), ("th", "e</w>")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    assert len(vocab) == CLIP_VOCAB_SIZE
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def t5_tokenizer() -> Any:
    """T5 Unigram tokenizer over printable ASCII, sized exactly to ``T5_VOCAB_SIZE``."""
    from transformers import T5Tokenizer

    chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]  # 94 characters
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in chars]
    pieces += [("▁" + c, -2.5) for c in chars]
    assert len(pieces) == T5_VOCAB_SIZE
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def qwen_tokenizer() -> Any:
    """Qwen2 byte-level tokenizer (no merges) with a ChatML chat template."""
    from transformers import Qwen2Tokenizer

    vocab = {char: i for i, char in enumerate(_byte_alphabet())}
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    assert len(vocab) == QWEN_VOCAB_SIZE
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        model_max_length=512,
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer
