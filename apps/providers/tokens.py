"""A calibrated token estimate, for models whose tokenizer we cannot ask (remote servers).

Calibrated against SmolLM2's byte-level BPE tokenizer (49k vocabulary) on English prose, code,
JSON, numbers, identifiers, European, Cyrillic, Arabic, Indic and CJK text: the estimate is about
1.2 times the real count on average and between 0.7 and 1.9 times it on every sample. Current
OpenAI-class tokenizers (100k-200k vocabularies) need fewer tokens for the same text, so for them it
errs high, which keeps prompts inside the context window. tests/providers/test_tokens.py checks the
calibration against the built-in model's real tokenizer.
"""

import math
import re

from apps.providers.base import ChatMessage

# Runs of letters and digits mixed (hashes, keys, base64, ids): close to a token per character.
_MIXED = re.compile(r"(?=[A-Za-z0-9+/=]*\d)(?=[A-Za-z0-9+/=]*[A-Za-z])[A-Za-z0-9+/=]{6,}")
# The pieces a BPE pre-tokenizer makes: words (split at case changes) with their leading space,
# single digits, single punctuation marks, whitespace runs, and runs of non-ASCII characters.
_PIECE = re.compile(
    r" ?[A-Z]?[a-z]+| ?[A-Z]+(?![a-z])| ?\d| ?[^\sA-Za-z\d\x80-\U0010ffff]|\s+|[^\x00-\x7f]+"
)
LETTERS_PER_TOKEN = 5
CAPITALS_PER_TOKEN = 3
TOKENS_PER_NON_ASCII_BYTE = 0.8
TOKENS_PER_MIXED_CHAR = 0.9
# ChatML-style templates spend about five tokens around each message and three to open the answer.
TOKENS_PER_MESSAGE = 5
TOKENS_PER_PROMPT = 3
# What OpenAI-class vision models charge for an image: 85 tokens at low detail; at high detail
# 85 plus 170 per 512-pixel tile, 765 for the usual 1024 x 1024 (its size is not read here).
IMAGE_TOKENS = {"low": 85, "high": 765, "auto": 765}


def _plain_tokens(text: str) -> float:
    count = 0.0
    for match in _PIECE.finditer(text):
        piece = match.group().lstrip(" ") or match.group()
        first = piece[0]
        if first.isascii() and first.isalpha():
            per_token = CAPITALS_PER_TOKEN if piece.isupper() else LETTERS_PER_TOKEN
            count += math.ceil(len(piece) / per_token)
        elif not first.isascii():
            count += len(piece.encode("utf-8", "surrogatepass")) * TOKENS_PER_NON_ASCII_BYTE
        else:
            count += 1
    return count


def text_tokens_estimate(text: str) -> int:
    """About how many tokens `text` takes."""
    count = 0.0
    position = 0
    for match in _MIXED.finditer(text):
        count += _plain_tokens(text[position : match.start()])
        count += len(match.group()) * TOKENS_PER_MIXED_CHAR
        position = match.end()
    count += _plain_tokens(text[position:])
    return math.ceil(count)


def prompt_tokens_estimate(messages: list[ChatMessage]) -> int:
    """About how many tokens a chat prompt takes, template included."""
    return TOKENS_PER_PROMPT + sum(
        TOKENS_PER_MESSAGE
        + text_tokens_estimate(message.content)
        + sum(IMAGE_TOKENS.get(image.detail, IMAGE_TOKENS["high"]) for image in message.images)
        for message in messages
    )
