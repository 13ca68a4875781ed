"""Bedrock Converse as the core's Translator: one short call per prompt that is not English.

Its errors are classified exactly as image calls are (aws/bedrock.py `classify`): throttling and 5xx
are transient, access denied and unknown models permanent. The bedrock-runtime client is the shared one
with a short read timeout: a translation answers in about a second, and a hung one should not hold the
job for the image call's 150 s.
"""
from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from ..core.translation import converse_request, translated_text
from .bedrock import classify
from .clients import client

READ_TIMEOUT_SECONDS = 30


class BedrockTranslator:
    def __init__(self, model_id: str, region: str = "", runtime=None) -> None:
        self.model_id = model_id
        self.region = region
        self._runtime = runtime

    @property
    def runtime(self):
        if self._runtime is None:
            self._runtime = client("bedrock-runtime", read_timeout=READ_TIMEOUT_SECONDS, max_attempts=2,
                                   region=self.region or None)
        return self._runtime

    def translate(self, text: str, source_language: str) -> str:
        try:
            answer = self.runtime.converse(**converse_request(text, source_language, self.model_id))
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc, self.model_id) from None
        return translated_text(answer, self.model_id)
