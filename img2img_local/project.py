"""The deployment configuration, read exactly as `cdk synth` reads it: cdk.json's context plus `-c` overrides.

The parsing itself is infra.config, the pure-Python module the CDK stack uses too (installed with the
project: `pip install -e .` covers img2img, img2img_local and infra).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from infra.config import IMAGE_SUFFIXES, SIDECAR_SUFFIX, ConfigError, PipelineConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"

__all__ = ["CDK_JSON", "IMAGE_SUFFIXES", "SIDECAR_SUFFIX", "ConfigError", "PipelineConfig",
           "load_pipeline_config", "parse_context_overrides"]


def parse_context_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """`-c key=value` pairs, as the CDK CLI takes them (values stay strings; the config coerces them)."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"context override {pair!r} is not of the form key=value")
        overrides[key.strip()] = value
    return overrides


def load_pipeline_config(overrides: Iterable[str] = (), cdk_json: Path = CDK_JSON) -> PipelineConfig:
    """PipelineConfig from cdk.json's "context", overridden by `-c key=value` pairs."""
    try:
        context = json.loads(cdk_json.read_text()).get("context", {})
    except FileNotFoundError:
        raise ConfigError(f"{cdk_json} not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{cdk_json} is not valid JSON: {exc}") from None
    return PipelineConfig.from_context({**context, **parse_context_overrides(overrides)})
