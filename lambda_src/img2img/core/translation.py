"""Prompts in any language: which texts of a model request are prompts, whether each needs translating,
and the Converse request that translates one (docs/parameters.md#prompt-language).

A small Bedrock text model translates a prompt that is not English before the image model sees it,
with a fixed instruction that keeps the `(word:weight)` syntax, style words and proper nouns and
answers with the translation only. Pure: the call itself is a `Translator` port (aws/translator.py).
The call is a Bedrock request like the image call, so it takes a ticket from its own model's quota.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import JobError, transient
from .language import ENGLISH, detect
from .quota import within_quota

AUTO, AS_IS = "auto", "as-is"
# The request fields that are prompts (SDXL's text_prompts items too), in the order they are translated.
TEXT_FIELDS = ("prompt", "negative_prompt", "search_prompt", "select_prompt")
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
ALLOWED = "auto, as-is, or the prompt's language as a code (zh, ja, fr, pt-BR, ...)"
MAX_OUTPUT_TOKENS = 1024
INSTRUCTION = (
    "You translate prompts for an image generation model into English. Translate the user's text into "
    "natural English. Keep every (word:number) weight as it is, with the word inside translated. Keep "
    "proper nouns, brand names, art styles, artist names, technical photo terms and any English words "
    "unchanged. Do not add, explain, censor or describe anything. Answer with the translated prompt only, "
    "no quotes, no preamble.")


class Translator(Protocol):
    """Translates one text to English (Bedrock Converse in production)."""

    model_id: str

    def translate(self, text: str, source_language: str) -> str: ...


@dataclass(frozen=True)
class Text:
    """One prompt text of a request: where it is (`prompt`, `text_prompts[1].text`) and what it says."""

    path: str
    text: str


def texts_of(request: dict[str, Any]) -> list[Text]:
    out = [Text(name, request[name]) for name in TEXT_FIELDS if isinstance(request.get(name), str)]
    for i, item in enumerate(request.get("text_prompts") or []):
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            out.append(Text(f"text_prompts[{i}].text", item["text"]))
    return out


def with_texts(request: dict[str, Any], translated: dict[str, str]) -> dict[str, Any]:
    """A copy of `request` with the texts at these paths replaced (the field order kept: bodies are pinned)."""
    out = copy.deepcopy(request)
    for path, text in translated.items():
        match = re.fullmatch(r"text_prompts\[(\d+)\]\.text", path)
        if match:
            out["text_prompts"][int(match.group(1))]["text"] = text
        else:
            out[path] = text
    return out


def language_of(setting: Any) -> str:
    """The job's `prompt_language` checked: auto, as-is or a code (JobError naming what is allowed)."""
    value = AUTO if setting is None else setting
    if not isinstance(value, str) or not (value in (AUTO, AS_IS) or LANGUAGE_CODE.match(value)):
        raise JobError("invalid_parameters", f"prompt_language {value!r} is not {ALLOWED}",
                       details={"errors": [{"field": "prompt_language", "source": "", "value": value,
                                            "message": "is not a prompt language setting", "allowed": ALLOWED}]})
    return value


def needing_translation(texts: list[Text], setting: str) -> list[tuple[Text, str]]:
    """The texts to translate, each with its source language: none with as-is; every non-empty one with a
    language code (the job says what it wrote; English words come back unchanged); with auto, those that
    `detect` finds not English."""
    if setting == AS_IS:
        return []
    if setting != AUTO:
        return [(item, setting) for item in texts if item.text.strip()]
    return [(item, language) for item in texts if (language := detect(item.text)) != ENGLISH]


def translate(translator: Translator, limiter: Any, text: str, source_language: str) -> str:
    """`text` in English, once `limiter` (core.ports.QuotaLimiter, or None) admits a call to the translation
    model: the same per-model budget as image calls, keyed by the translation model's id. No slot: the
    transient `quota_wait` (core/quota.py), and no call."""
    return within_quota(limiter, translator.model_id, lambda: translator.translate(text, source_language))


def converse_request(text: str, source_language: str, model_id: str) -> dict[str, Any]:
    """The Converse call that translates one prompt (deterministic: temperature 0)."""
    return {
        "modelId": model_id,
        "system": [{"text": INSTRUCTION}],
        "messages": [{"role": "user", "content": [{"text": f"[{source_language}] {text}"}]}],
        "inferenceConfig": {"maxTokens": MAX_OUTPUT_TOKENS, "temperature": 0},
    }


def translated_text(answer: dict[str, Any], model_id: str) -> str:
    """The translation in a Converse answer, or the typed error its stop reason means."""
    reason = answer.get("stopReason")
    if reason in ("content_filtered", "guardrail_intervened"):
        raise JobError("content_filtered", f"the translation model {model_id} refused the prompt ({reason}); "
                       "rephrase it, or set prompt_language: as-is to send it untranslated",
                       details={"stage": "translation", "stop_reason": reason})
    parts = (answer.get("output") or {}).get("message", {}).get("content") or []
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict)).strip()
    if reason == "max_tokens" or not text:
        raise transient("model_error", f"the translation model {model_id} answered no usable translation "
                        f"(stop reason {reason!r})")
    return text
