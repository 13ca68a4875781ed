#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth` (or `CDK_OUTDIR=cdk.out python app.py`). Works offline, no credentials.

Every PipelineConfig field is read from context under its camelCase name (cdk.json, or `-c key=value`).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path

import aws_cdk as cdk

from infra import bundling, checks, nag
from infra.config import ConfigError, PipelineConfig, _camel
from infra.stack import STACK_NAME, Img2ImgStack

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def cdk_json_context() -> dict:
    """cdk.json's context, so `python app.py` alone sees the same defaults and feature flags as the CLI
    (context passed by the CLI, including `-c`, takes precedence over these)."""
    try:
        return dict(json.loads(CDK_JSON.read_text()).get("context", {}))
    except (OSError, ValueError) as exc:
        sys.exit(f"bedrock-img2img: cannot read {CDK_JSON.name}: {exc}")


def config_from(app: cdk.App) -> PipelineConfig:
    context = {}
    for f in fields(PipelineConfig):
        key = _camel(f.name)
        value = app.node.try_get_context(key)
        if value is not None:
            context[key] = value
    return PipelineConfig.from_context(context)


def main() -> None:
    app = cdk.App(context=cdk_json_context())
    try:
        config = config_from(app)
    except ConfigError as exc:
        sys.exit(f"bedrock-img2img: invalid configuration: {exc}")
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account or region else None
    try:  # some checks need the stack's region (infra/regions.py): same one-line error
        stack = Img2ImgStack(app, STACK_NAME, config=config, env=env)
    except ConfigError as exc:
        sys.exit(f"bedrock-img2img: invalid configuration: {exc}")
    except RuntimeError:
        if not bundling.FAILURES:
            raise
        sys.exit(f"bedrock-img2img: bundling failed: {bundling.FAILURES[-1]}")
    nag.attach(app)
    nag.acknowledge(stack)
    checks.acknowledge(stack)  # cfn-lint's and checkov's (make lint)
    app.synth()


if __name__ == "__main__":
    main()
