"""The offline engine's Converse (`POST /model/{modelId}/converse`): text models that translate prompts.

Deterministic: a table of the test and demo prompts and their English, and for any other text an English
gloss made word by word from a small dictionary (unknown words kept), so the image model always gets
Latin text. The fault knobs apply as to InvokeModel (throttling, injected errors, latency); a blocked
word answers `stopReason: content_filtered` as a guarded model would. Text models: Amazon Nova's
(`amazon.nova-*`, plain or as a geography profile) and Anthropic's, which is what a deployment picks.
"""
from __future__ import annotations

import re
from typing import Any

TEXT_MODEL = re.compile(r"^((us|eu|apac|global|jp|au|ca|us-gov)\.)?(amazon\.nova-[a-z0-9-]+|anthropic\.[a-z0-9.-]+)"
                        r"(:\d+)?$")
# The text models the control plane lists (GetFoundationModel, inference profiles), by foundation-model id.
TEXT_MODELS = {"amazon.nova-2-lite-v1:0": "Nova 2 Lite"}
TRANSLATIONS = {
    "一艘宇宙飞船": "a spaceship",
    "一只戴着宇航头盔的猫": "a cat wearing an astronaut helmet",
    "一艘红色的宇宙飞船": "a red spaceship",
    "一艘蓝色的宇宙飞船": "a blue spaceship",
    "模糊": "blurry",
    "猫": "the cat",
    "一杯绿茶": "a cup of green tea",
    "宇宙船の絵": "a painting of a spaceship",
    "un chat avec des lunettes": "a cat with glasses",
}
WORDS = {"猫": "cat", "狗": "dog", "红色": "red", "蓝色": "blue", "绿色": "green", "宇宙飞船": "spaceship",
         "月亮": "moon", "咖啡": "coffee", "火箭": "rocket", "一只": "a", "一艘": "a", "的": "", "在": "on",
         "和": "and", "城市": "city", "夜晚": "night", "水彩": "watercolor"}
_PREFIX = re.compile(r"^\[([A-Za-z0-9-]+)\]\s*")


class ConverseInvalid(Exception):
    """A body Bedrock would answer with 400 ValidationException."""


def is_text_model(model_id: str) -> bool:
    return bool(TEXT_MODEL.match(model_id))


def text_model_base(model_id: str) -> str | None:
    """`us.amazon.nova-2-lite-v1:0` -> `amazon.nova-2-lite-v1:0`, for a text model the control plane lists."""
    match = TEXT_MODEL.match(model_id)
    base = match.group(3) + (match.group(4) or "") if match else None
    return base if base in TEXT_MODELS else None


def user_text(body: dict[str, Any]) -> str:
    """The last user message's text, as Converse carries it (validated like Bedrock: messages required)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ConverseInvalid("1 validation error detected: Value at 'messages' failed to satisfy constraint: "
                              "Member must not be null and must have length greater than or equal to 1")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user" or not isinstance(last.get("content"), list):
        raise ConverseInvalid("A conversation must end with a user message with a content list.")
    return "".join(part.get("text", "") for part in last["content"] if isinstance(part, dict))


def translate(text: str) -> str:
    """The deterministic English of a prompt (the `[zh] ` hint of our instruction format removed)."""
    text = _PREFIX.sub("", text).strip()
    if text in TRANSLATIONS:
        return TRANSLATIONS[text]
    if text.isascii():
        return text
    out, rest = [], text
    while rest:
        for length in range(min(6, len(rest)), 0, -1):
            piece = rest[:length]
            if piece in WORDS or length == 1:
                out.append(WORDS.get(piece, piece if piece.isascii() else ""))
                rest = rest[length:]
                break
    english = " ".join(w for w in " ".join(out).split() if w)
    return english or "an image"


def answer(body: dict[str, Any], blocked: bool, latency_ms: int) -> dict[str, Any]:
    """Converse's response shape: the translation, or a content-filtered stop."""
    text = user_text(body)
    if blocked:
        content, reason = [{"text": "I can't help with that."}], "content_filtered"
    else:
        content, reason = [{"text": translate(text)}], "end_turn"
    tokens_in, tokens_out = max(1, len(text) // 2), max(1, len(content[0]["text"]) // 4)
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": reason,
            "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out, "totalTokens": tokens_in + tokens_out},
            "metrics": {"latencyMs": latency_ms}}
