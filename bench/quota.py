"""Per-model quotas through the whole local stack: one model's burst, and three models mixed.

The offline engine enforces a requests-per-minute quota per model (sliding 60 s windows) with a latency
per model; the worker paces each model with the shared limiter (lambda_src/img2img/core/quota.py) over
a quota table in moto, configured at exactly the engine's quotas. The bench uploads a burst, watches
the output bucket and reports, per model: completions per minute while it had work against its quota,
model calls per job (every throttled attempt counts), lost jobs, the DLQ, and end-to-end latency
against the ideal (the queue drained at quota speed).
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import time
from dataclasses import asdict, dataclass

from bench.common import SAMPLES, percentile, run_as_script, table, verdict, write_results
from bench.throughput import quiet_workers

SD35 = "stability.sd3-5-large-v1:0"
SDXL = "stability.stable-diffusion-xl-v1"
REMOVE_BACKGROUND = "remove-background"  # an Image Services operation: no prompt, a fast model


@dataclass
class Mix:
    """`jobs`: kind -> count; a kind is a model id (img2img) or an operation name."""

    jobs: dict
    rpm: dict          # engine model id -> requests per minute (the engine's quota and the limiter's)
    latency_ms: dict   # engine model id -> latency
    # The limiter paces each model; concurrency only needs room for every model's calls in flight (Little's law)
    # plus invocations free to take returning jobs on time (a batch holds its invocation until its slowest call).
    context: tuple[str, ...] = ("batchSize=4", "bedrockMaxConcurrency=32", "batchWindowSeconds=0")
    timeout_s: float = 600.0
    label: str = "one-model"
    jitter_ms: int = 500


ONE = Mix(jobs={SD35: 300}, rpm={SD35: 60}, latency_ms={SD35: 3000}, label="one-model")
ONE_QUICK = Mix(jobs={SD35: 90}, rpm={SD35: 60}, latency_ms={SD35: 3000}, label="one-model", timeout_s=240)
RB_ENGINE = "stability.stable-image-remove-background-v1:0"
THREE = Mix(jobs={SD35: 40, SDXL: 40, REMOVE_BACKGROUND: 40},
            rpm={SD35: 30, SDXL: 20, RB_ENGINE: 60}, latency_ms={SD35: 8000, SDXL: 4000, RB_ENGINE: 1000},
            label="three-models", timeout_s=420,
            context=("batchSize=4", "bedrockMaxConcurrency=48", "batchWindowSeconds=0"))


def _stack_class():
    from img2img.aws.quota import TTL_ATTRIBUTE
    from img2img_local.stack import LocalStack

    class QuotaStack(LocalStack):
        """The local stack plus the quota table and the two variables the CDK stack sets with modelQuotas."""

        model_quotas: dict = {}  # noqa: RUF012 (set per instance before start)

        def worker_environment(self):
            env = super().worker_environment()
            name = f"{self.name_prefix}-quota"
            dynamodb = self.client("dynamodb")
            if name not in dynamodb.list_tables()["TableNames"]:
                dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                                      KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                                      AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                    "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
            env["IMG2IMG_QUOTA_TABLE"] = name
            env["IMG2IMG_MODEL_QUOTAS"] = json.dumps(self.model_quotas)
            return env

    return QuotaStack


def _job_model(kind: str) -> tuple[str, str]:
    """(the model id the job calls = the limiter's key, the engine's model id) of a job kind."""
    from img2img.operations import default_models

    if kind in default_models():
        called = default_models()[kind]
        return called, called.split(".", 1)[1] if called.startswith("us.") else called
    return kind, kind


def run_mix(m: Mix) -> dict:
    with quiet_workers(f"workers-quota-{m.label}"):
        return _run_mix(m)


def _run_mix(m: Mix) -> dict:
    from img2img.core.records import record_key
    from img2img_local.engine import EngineConfig
    from img2img_local.project import load_pipeline_config

    logging.getLogger("img2img_local").setLevel(logging.WARNING)
    config = load_pipeline_config(["logLevel=WARNING", "sidecarGraceSeconds=0", *m.context])
    engine = EngineConfig(latency_ms=0, jitter_ms=m.jitter_ms, model_requests_per_minute=dict(m.rpm),
                          model_latency_ms=dict(m.latency_ms), seed=7)
    stack = _stack_class()(config, engine_config=engine, visibility_timeout_seconds=120, serve_api=False)
    kinds = {kind: _job_model(kind) for kind in m.jobs}
    stack.model_quotas = {called: m.rpm[engine_id] for called, engine_id in kinds.values()}
    photo = (SAMPLES / "coffee.png").read_bytes()
    jobs = [(kind, i) for i in range(max(m.jobs.values())) for kind in m.jobs if i < m.jobs[kind]]  # interleaved
    with stack:
        r = stack.resources
        s3 = stack.client("s3")
        clients = [stack.client("s3") for _ in range(4)]
        uploaded_at: dict[str, float] = {}
        kind_of: dict[str, str] = {}

        def upload(n: int) -> None:
            kind, i = jobs[n]
            key = f"quota/{kind.replace(':', '_')}/img-{i:04d}.png"
            meta = ({"operation": kind} if kind == REMOVE_BACKGROUND else
                    {"prompt": "a watercolor painting", "model-id": kind, "seed": str(i + 1)})
            clients[n % 4].put_object(Bucket=r.input_bucket, Key=key, Body=photo, Metadata=meta)
            uploaded_at[key], kind_of[key] = time.monotonic(), kind

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(upload, range(len(jobs))))
        burst_s = time.monotonic() - t0
        wanted = {record_key(config.output_prefix, k): k for k in uploaded_at}
        seen: dict[str, float] = {}
        while len(seen) < len(wanted) and time.monotonic() < t0 + m.timeout_s:
            now = time.monotonic()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=r.output_bucket, Prefix="quota/"):
                for obj in page.get("Contents", []):
                    if obj["Key"] in wanted and obj["Key"] not in seen:
                        seen[obj["Key"]] = now
            time.sleep(0.5)
        time.sleep(2.0)
        versions: dict[str, int] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=r.output_bucket, Prefix="quota/"):
            for v in page.get("Versions", []):
                if v["Key"] in wanted:
                    versions[v["Key"]] = versions.get(v["Key"], 0) + 1
        failed = sum(1 for k in seen if s3.head_object(Bucket=r.output_bucket, Key=k)["Metadata"].get("status")
                     not in (None, "succeeded"))
        sqs = stack.client("sqs")
        dlq = int(sqs.get_queue_attributes(QueueUrl=r.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
                  ["Attributes"]["ApproximateNumberOfMessages"])
        quota_items = stack.client("dynamodb").scan(TableName=f"{stack.name_prefix}-quota", Select="COUNT")["Count"]
        engine_stats = stack.engine.stats()
        lambda_stats = stack.stats()
    per_model = {}
    for kind, (_called, engine_id) in kinds.items():
        keys = [k for k in seen if kind_of[wanted[k]] == kind]
        done = sorted(seen[k] - t0 for k in keys)
        lat = sorted(seen[k] - uploaded_at[wanted[k]] for k in keys)
        rpm, n = m.rpm[engine_id], len(done)
        lo, hi = int(n * 0.1), max(int(n * 0.9) - 1, 0)
        sustained = (hi - lo) / (done[hi] - done[lo]) * 60 if n >= 10 and done[hi] > done[lo] else 0.0
        outcomes = engine_stats["by_model"].get(engine_id, {})
        calls = sum(outcomes.values())
        ideal_p95 = 0.95 * m.jobs[kind] / rpm * 60 + m.latency_ms[engine_id] / 1000
        per_model[kind] = {
            "jobs": m.jobs[kind], "records": n, "quota_rpm": rpm,
            "completions_per_minute_sustained": round(sustained, 1),
            "share_of_quota": round(sustained / rpm, 3),
            "model_calls": calls, "model_calls_per_job": round(calls / max(1, n), 3),
            "throttled": outcomes.get("throttled", 0), "engine_outcomes": outcomes,
            "last_completion_s": round(done[-1], 1) if done else None,
            "ideal_drain_s": round(m.jobs[kind] / rpm * 60, 1),
            "latency_p50_s": round(percentile(lat, 0.5), 1), "latency_p95_s": round(percentile(lat, 0.95), 1),
            "ideal_latency_p95_s": round(ideal_p95, 1),
        }
    return {"mix": asdict(m), "burst_upload_s": round(burst_s, 2), "jobs": len(jobs), "records": len(seen),
            "lost": len(jobs) - len(seen), "failed_records": failed,
            "records_written_more_than_once": sum(1 for c in versions.values() if c > 1), "dlq": dlq,
            "quota_items": quota_items, "per_model": per_model,
            "lambda": {k: lambda_stats.get(k) for k in ("invocations", "records", "failed_records", "errors",
                                                        "timeouts", "cold_starts", "max_in_flight")}}


def report(res: dict) -> None:
    print(f"{res['mix']['label']}: {res['jobs']} jobs, {res['records']} records, lost {res['lost']}, "
          f"failed {res['failed_records']}, duplicates {res['records_written_more_than_once']}, DLQ {res['dlq']}")
    print(table(["model", "quota", "sustained/min", "share", "calls/job", "throttled", "last done (ideal) s",
                 "p50 / p95 s (ideal p95)", "verdict"], [
        (kind, p["quota_rpm"], p["completions_per_minute_sustained"], p["share_of_quota"], p["model_calls_per_job"],
         p["throttled"], f"{p['last_completion_s']} ({p['ideal_drain_s']})",
         f"{p['latency_p50_s']} / {p['latency_p95_s']} ({p['ideal_latency_p95_s']})",
         verdict(p["share_of_quota"] >= 0.95 and p["model_calls_per_job"] <= 1.02))
        for kind, p in res["per_model"].items()]))


def main(quick: bool = False) -> dict:
    results = {}
    for mix in ((ONE_QUICK,) if quick else (ONE, THREE)):
        results[mix.label] = run_mix(mix)
        report(results[mix.label])
    write_results("quota", {"quick": quick, **results})
    return results


if __name__ == "__main__":
    run_as_script(main, __doc__)
