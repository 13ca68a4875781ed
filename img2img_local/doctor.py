"""`img2img doctor`: will every configured model still answer? Read-only, with your credentials.

For each model the deployment configures (cdk.json plus `-c` overrides, as `cdk synth` reads them): its
lifecycle, whether the Bedrock region (or its inference profile) serves it, whether this account may
invoke it (an unbilled probe, img2img/aws/lifecycle.py), and its requests-per-minute quotas against the
configured concurrency. Prints a table and the advice per problem; exits 1 when any problem would alarm
(CI can gate a deploy on it), 0 otherwise. The same checks run daily in the stack (lifecycle_check).
"""
from __future__ import annotations

import argparse
from datetime import UTC, datetime

from img2img.lifecycle import ERROR, INFO, WARNING, ModelFacts, Problem, check, exit_status
from img2img_local.project import load_pipeline_config

MARK = {ERROR: "FAIL", WARNING: "warn", INFO: "info"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="override a cdk.json context value, as `cdk synth -c` does (repeatable)")
    parser.add_argument("--region", default="",
                        help="the Bedrock region to check (default: bedrockRegion, else your profile's region)")


def table(facts: list[ModelFacts], problems: list[Problem]) -> str:
    """One row per model, then one line of advice per problem."""
    rows = [("model", "used by", "lifecycle", "region", "access", "problems")]
    for f in facts:
        mine = [p for p in problems if p.model_id == f.model_id]
        lifecycle = "retired" if f.probe == "retired" else (f.status or ("-" if f.found else "not found")).lower()
        if f.end_of_life_date:
            lifecycle += f" (EOL {f.end_of_life_date})"
        region = "not offered" if not f.found or f.served_regions == () else \
            ",".join(f.served_regions) if f.served_regions else "yes"
        worst = next((MARK[s] for s in (ERROR, WARNING, INFO) if any(p.severity == s for p in mine)), "ok")
        rows.append((f.model_id, ",".join(f.operations), lifecycle, region, f.probe, worst))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for p in problems:
        lines.append(f"{MARK[p.severity]}  {p.model_id} [{p.kind}]: {p.detail}\n      -> {p.advice}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from img2img.aws.lifecycle import LifecycleReader
    from infra.lifecycle import plan_for  # imports aws_cdk: only when the command runs

    config = load_pipeline_config(args.context)
    region = args.region or config.bedrock_region or _profile_region()
    if not region:
        raise ValueError("no Bedrock region: set bedrockRegion in cdk.json, --region, or AWS_DEFAULT_REGION")
    plan = plan_for(config, region)
    facts = LifecycleReader(region).facts(plan)
    problems = check(facts, plan, datetime.now(UTC).date())
    print(f"img2img doctor: {len(plan.models)} models in {region}, {plan.concurrency} Bedrock calls in flight at most")
    print(table(facts, problems), flush=True)
    status = exit_status(problems)
    print("FAILED: fix the problems marked FAIL before jobs fail on them" if status else "OK")
    return status


def _profile_region() -> str:
    import boto3

    return boto3.session.Session().region_name or ""
