"""Per-model quotas through the whole local stack: the issue's benchmarks 1-3 (issue 14).

The offline engine enforces a requests-per-minute quota per model (sliding 60 s windows) with a latency
per model; the worker paces each model with the shared limiter (lambda_src/img2img/core/quota.py) over
the local stack's quota table (moto), configured with `modelQuotas` at the engine's quotas. The bench
uploads a burst, watches the output bucket and reports, per model: completions per minute while it had
work against its quota, model calls per job (every throttled attempt counts), lost jobs, the DLQ, and
end-to-end latency against the ideal (the queue drained at quota speed).

1. one-model: one model, a burst (300; quick 90).
2. three-models: three models with different quotas and latencies, one mixed burst.
3. quota-drop: one model whose engine quota halves mid-run (a daily cap kicking in) while the limiter
   stays configured at the old one: the AIMD must find the new quota.
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
    # (seconds after the burst started, engine model id -> its new quota): the engine's quota changes then,
    # the limiter keeps `rpm` (its configuration).
    drop: tuple | None = None


ONE = Mix(jobs={SD35: 300}, rpm={SD35: 60}, latency_ms={SD35: 3000}, label="one-model", timeout_s=480)
ONE_QUICK = Mix(jobs={SD35: 90}, rpm={SD35: 60}, latency_ms={SD35: 3000}, label="one-model", timeout_s=240)
RB_ENGINE = "stability.stable-image-remove-background-v1:0"
THREE = Mix(jobs={SD35: 60, SDXL: 40, REMOVE_BACKGROUND: 120},
            rpm={SD35: 30, SDXL: 20, RB_ENGINE: 60}, latency_ms={SD35: 8000, SDXL: 4000, RB_ENGINE: 1000},
            label="three-models", timeout_s=420,
            context=("batchSize=4", "bedrockMaxConcurrency=48", "batchWindowSeconds=0"))
THREE_QUICK = Mix(jobs={SD35: 30, SDXL: 20, REMOVE_BACKGROUND: 60},
                  rpm=THREE.rpm, latency_ms=THREE.latency_ms, label="three-models", timeout_s=240,
                  context=THREE.context)
DROP = Mix(jobs={SD35: 150}, rpm={SD35: 60}, latency_ms={SD35: 3000}, label="quota-drop", timeout_s=480,
           drop=(60.0, {SD35: 30}))
DROP_QUICK = Mix(jobs={SD35: 100}, rpm={SD35: 60}, latency_ms={SD35: 3000}, label="quota-drop", timeout_s=360,
                 drop=(40.0, {SD35: 30}))
RECOVERY_S = 60.0  # the new quota must be found within this of the drop


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
    from img2img_local.stack import LocalStack

    logging.getLogger("img2img_local").setLevel(logging.WARNING)
    kinds = {kind: _job_model(kind) for kind in m.jobs}
    quotas = {called: m.rpm[engine_id] for called, engine_id in kinds.values()}
    config = load_pipeline_config(["logLevel=WARNING", "sidecarGraceSeconds=0", *m.context,
                                   f"modelQuotas={json.dumps(quotas)}"])
    engine = EngineConfig(latency_ms=0, jitter_ms=m.jitter_ms, model_requests_per_minute=dict(m.rpm),
                          model_latency_ms=dict(m.latency_ms), seed=7)
    stack = LocalStack(config, engine_config=engine, visibility_timeout_seconds=120, serve_api=False)
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
        dropped_at = None
        while len(seen) < len(wanted) and time.monotonic() < t0 + m.timeout_s:
            now = time.monotonic()
            if m.drop and dropped_at is None and now >= t0 + m.drop[0]:
                stack.engine.engine.faults.configure({"model_requests_per_minute": {**m.rpm, **m.drop[1]}})
                dropped_at = now - t0
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
        quota_items = stack.client("dynamodb").scan(TableName=r.quota_table, Select="COUNT")["Count"]
        engine_stats = stack.engine.stats()
        lambda_stats = stack.stats()
    per_model = {}
    for kind, (_called, engine_id) in kinds.items():
        keys = [k for k in seen if kind_of[wanted[k]] == kind]
        done = sorted(seen[k] - t0 for k in keys)
        lat = sorted(seen[k] - uploaded_at[wanted[k]] for k in keys)
        rpm, n = m.rpm[engine_id], len(done)
        new_rpm = m.drop[1].get(engine_id, rpm) if m.drop else rpm
        outcomes = engine_stats["by_model"].get(engine_id, {})
        calls = sum(outcomes.values())
        ideal_drain = (m.jobs[kind] / rpm * 60 if not m.drop else
                       m.drop[0] + max(0, m.jobs[kind] - m.drop[0] * rpm / 60) / new_rpm * 60)
        ideal_p95 = 0.95 * ideal_drain + m.latency_ms[engine_id] / 1000
        entry = {
            "jobs": m.jobs[kind], "records": n, "quota_rpm": rpm,
            "completions_per_minute_sustained": round(_sustained(done), 1),
            "share_of_quota": round(_sustained(done) / rpm, 3),
            "model_calls": calls, "model_calls_per_job": round(calls / max(1, n), 3),
            "throttled": outcomes.get("throttled", 0), "engine_outcomes": outcomes,
            "throttled_share_of_calls": round(outcomes.get("throttled", 0) / max(1, calls), 4),
            "first_completion_s": round(done[0], 1) if done else None,
            "last_completion_s": round(done[-1], 1) if done else None,
            "ideal_drain_s": round(ideal_drain, 1),
            "latency_p50_s": round(percentile(lat, 0.5), 1), "latency_p95_s": round(percentile(lat, 0.95), 1),
            "ideal_latency_p95_s": round(ideal_p95, 1),
            "completion_times_s": [round(t, 2) for t in done],
        }
        if m.drop and dropped_at is not None:
            before = [t for t in done if t <= dropped_at]
            after = [t for t in done if t > dropped_at + RECOVERY_S]
            entry.update({
                "quota_rpm_after_drop": new_rpm, "dropped_at_s": round(dropped_at, 1),
                "completions_per_minute_before_drop": round(_sustained(before), 1),
                "completions_per_minute_from_a_minute_after_drop": round(_rate_over(after), 1),
                "share_of_new_quota": round(_rate_over(after) / new_rpm, 3),
            })
        per_model[kind] = entry
    res = {"mix": asdict(m), "burst_upload_s": round(burst_s, 2), "jobs": len(jobs), "records": len(seen),
           "lost": len(jobs) - len(seen), "failed_records": failed,
           "records_written_more_than_once": sum(1 for c in versions.values() if c > 1), "dlq": dlq,
           "quota_items": quota_items, "per_model": per_model,
           "lambda": {k: lambda_stats.get(k) for k in ("invocations", "records", "failed_records", "errors",
                                                       "timeouts", "cold_starts", "max_in_flight")}}
    res["targets"] = _targets(m, res)
    return res


def _sustained(done: list[float]) -> float:
    """Completions per minute between the 10th and 90th percentile completion (the burst's steady part)."""
    n = len(done)
    lo, hi = int(n * 0.1), max(int(n * 0.9) - 1, 0)
    return (hi - lo) / (done[hi] - done[lo]) * 60 if n >= 10 and done[hi] > done[lo] else 0.0


def _rate_over(done: list[float]) -> float:
    """Completions per minute from the first to the 90th percentile of `done` (the tail drains unevenly)."""
    n = len(done)
    hi = max(int(n * 0.9) - 1, 0)
    return hi / (done[hi] - done[0]) * 60 if n >= 10 and done[hi] > done[0] else 0.0


def _targets(m: Mix, res: dict) -> dict:
    """The issue's targets for this run: name -> {holds, value, target}."""
    clean = res["lost"] == 0 and res["dlq"] == 0 and res["failed_records"] == 0
    t: dict[str, dict] = {"no_job_lost_or_dead_lettered": {"holds": clean, "value": [res["lost"], res["dlq"]],
                                                          "target": [0, 0]}}
    for kind, p in res["per_model"].items():
        name = kind.split(".")[-1].split(":")[0]
        if m.drop:
            t[f"{name}.throttled_share"] = {"holds": p["throttled_share_of_calls"] <= 0.02,
                                            "value": p["throttled_share_of_calls"], "target": 0.02}
            t[f"{name}.share_of_new_quota"] = {"holds": p.get("share_of_new_quota", 0) >= 0.95,
                                               "value": p.get("share_of_new_quota"), "target": 0.95}
        elif len(m.jobs) == 1:
            t[f"{name}.share_of_quota"] = {"holds": p["share_of_quota"] >= 0.97, "value": p["share_of_quota"],
                                           "target": 0.97}
            t[f"{name}.calls_per_job"] = {"holds": p["model_calls_per_job"] <= 1.02,
                                          "value": p["model_calls_per_job"], "target": 1.02}
            t[f"{name}.p95_vs_ideal"] = {"holds": p["latency_p95_s"] <= 1.1 * p["ideal_latency_p95_s"],
                                         "value": round(p["latency_p95_s"] / p["ideal_latency_p95_s"], 3),
                                         "target": 1.1}
        else:
            t[f"{name}.share_of_quota"] = {"holds": p["share_of_quota"] >= 0.95, "value": p["share_of_quota"],
                                           "target": 0.95}
            t[f"{name}.drained_on_time"] = {"holds": p["last_completion_s"] <= 1.1 * p["ideal_drain_s"] + 15,
                                            "value": p["last_completion_s"], "target": p["ideal_drain_s"]}
    return t


def report(res: dict) -> None:
    print(f"{res['mix']['label']}: {res['jobs']} jobs, {res['records']} records, lost {res['lost']}, "
          f"failed {res['failed_records']}, duplicates {res['records_written_more_than_once']}, DLQ {res['dlq']}")
    print(table(["model", "quota", "sustained/min", "share", "calls/job", "throttled", "first / last done "
                 "(ideal) s", "p50 / p95 s (ideal p95)", "after drop"], [
        (kind, p["quota_rpm"], p["completions_per_minute_sustained"], p["share_of_quota"], p["model_calls_per_job"],
         p["throttled"], f"{p['first_completion_s']} / {p['last_completion_s']} ({p['ideal_drain_s']})",
         f"{p['latency_p50_s']} / {p['latency_p95_s']} ({p['ideal_latency_p95_s']})",
         f"{p['completions_per_minute_from_a_minute_after_drop']}/min of {p['quota_rpm_after_drop']} "
         f"({p['share_of_new_quota']})" if "share_of_new_quota" in p else "-")
        for kind, p in res["per_model"].items()]))
    print("targets: " + ", ".join(f"{k} {t['value']} ({verdict(t['holds'])})" for k, t in res["targets"].items()))


def main(quick: bool = False, only: str | None = None) -> dict:
    results = {}
    for mix in ((ONE_QUICK, THREE_QUICK, DROP_QUICK) if quick else (ONE, THREE, DROP)):
        if only and mix.label != only:
            continue
        results[mix.label] = run_mix(mix)
        report(results[mix.label])
    targets = {f"{label}.{k}": t for label, res in results.items() for k, t in res["targets"].items()}
    payload = {"quick": quick, **results, "targets": targets}
    write_results("quota", payload)
    return payload


if __name__ == "__main__":
    run_as_script(main, __doc__)
