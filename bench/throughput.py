"""Throughput under a Bedrock quota: a burst of uploads through the whole local stack.

`img2img_local.stack.LocalStack` (moto, the emulated SQS event source with real worker processes, the
offline engine) with the engine answering after a realistic latency (5 s + up to 1 s of jitter) and
enforcing a requests-per-minute quota. A burst of uploads lands in the input bucket at once; the bench
watches the output bucket and reports completions per minute against the quota, lost jobs (every upload
must have exactly one record, i.e. one version of its record object), model calls per job (the engine's
own counters: every throttled attempt counts), end-to-end latency (upload -> record) and the DLQ.

The pipeline's concurrency comes from the config alone (Little's law: in-flight Bedrock calls =
quota x seconds per call / 60): `bedrockMaxConcurrency`, `batchSize` -> event source max concurrency x
batch concurrency. billing.py reuses `run_workload` for the sequential comparison.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass

from bench.common import CACHE, SAMPLES, percentile, run_as_script, table, verdict, write_results

SAMPLE_FILES = ("rocket.jpg", "coffee.png", "astronaut.png", "chelsea.png")


@dataclass
class Workload:
    uploads: int = 150
    latency_ms: int = 10000
    jitter_ms: int = 2000
    quota_rpm: int = 60
    # Little's law: 60 requests/min x ~12 s per request cycle / 60 = 12 calls in flight = 2 x 6.
    context: tuple[str, ...] = ("batchSize=6", "bedrockMaxConcurrency=12")
    batch_concurrency: int | None = None  # override IMG2IMG_BATCH_CONCURRENCY (None: the config's)
    event_source_concurrency: int | None = None  # override the event source's max concurrency
    visibility_timeout: int = 120
    timeout_s: float = 420.0
    label: str = "concurrent"


QUICK = Workload(uploads=40, latency_ms=2500, jitter_ms=500, quota_rpm=120,
                 context=("batchSize=3", "bedrockMaxConcurrency=6"), timeout_s=90.0)
FULL = Workload()


def _stack_class():
    from img2img_local.stack import LocalStack

    class BenchStack(LocalStack):
        """LocalStack with two knobs the sequential comparison needs (the emulation itself is untouched)."""

        batch_concurrency: int | None = None
        event_source_concurrency: int | None = None

        def worker_environment(self):
            env = super().worker_environment()
            if self.batch_concurrency is not None:
                env["IMG2IMG_BATCH_CONCURRENCY"] = str(self.batch_concurrency)
            return env

        def _event_source(self):
            source = super()._event_source()
            if self.event_source_concurrency is not None:
                source.maximum_concurrency = self.event_source_concurrency
            return source

    return BenchStack


@contextlib.contextmanager
def quiet_workers(log_name: str):
    """The worker sandboxes inherit stdout/stderr (Powertools logs, EMF metrics): send them to a log file."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{log_name}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield path
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_workload(w: Workload) -> dict:
    with quiet_workers(f"workers-{w.label}"):
        return _run_workload(w)


def _run_workload(w: Workload) -> dict:
    from img2img.core.records import record_key
    from img2img_local.engine import EngineConfig
    from img2img_local.project import load_pipeline_config

    logging.getLogger("img2img_local").setLevel(logging.WARNING)
    config = load_pipeline_config(["logLevel=WARNING", "sidecarGraceSeconds=0", *w.context])
    engine = EngineConfig(latency_ms=w.latency_ms, jitter_ms=w.jitter_ms, requests_per_minute=w.quota_rpm, seed=7)
    stack = _stack_class()(config, engine_config=engine, visibility_timeout_seconds=w.visibility_timeout)
    stack.batch_concurrency = w.batch_concurrency
    stack.event_source_concurrency = w.event_source_concurrency
    bodies = {name: (SAMPLES / name).read_bytes() for name in SAMPLE_FILES}
    with stack:
        r = stack.resources
        s3 = stack.client("s3")
        keys = [f"burst/img-{i:04d}{'.jpg' if SAMPLE_FILES[i % 4].endswith('.jpg') else '.png'}"
                for i in range(w.uploads)]
        uploaded_at: dict[str, float] = {}

        def upload(i: int) -> None:
            client = clients[i % len(clients)]
            client.put_object(Bucket=r.input_bucket, Key=keys[i], Body=bodies[SAMPLE_FILES[i % 4]],
                              Metadata={"prompt": "a watercolor painting", "seed": str(i + 1)})
            uploaded_at[keys[i]] = time.monotonic()

        clients = [stack.client("s3") for _ in range(4)]
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(upload, range(w.uploads)))
        burst_s = time.monotonic() - t0
        wanted = {record_key(config.output_prefix, k): k for k in keys}
        seen: dict[str, float] = {}
        deadline = t0 + w.timeout_s
        while len(seen) < len(wanted) and time.monotonic() < deadline:
            now = time.monotonic()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=r.output_bucket, Prefix="burst/"):
                for obj in page.get("Contents", []):
                    if obj["Key"] in wanted and obj["Key"] not in seen:
                        seen[obj["Key"]] = now
            time.sleep(0.5)
        time.sleep(2.0)  # let a late duplicate (a record written twice) show up before counting versions
        versions: dict[str, int] = {}
        statuses: dict[str, int] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=r.output_bucket, Prefix="burst/"):
            for v in page.get("Versions", []):
                if v["Key"] in wanted:
                    versions[v["Key"]] = versions.get(v["Key"], 0) + 1
        for key in list(seen)[:: max(1, len(seen) // 40)]:  # a sample of records: their status
            head = s3.head_object(Bucket=r.output_bucket, Key=key)
            status = head["Metadata"].get("status", "?")
            statuses[status] = statuses.get(status, 0) + 1
        sqs = stack.client("sqs")
        dlq = int(sqs.get_queue_attributes(QueueUrl=r.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
                  ["Attributes"]["ApproximateNumberOfMessages"])
        engine_stats = stack.engine.stats()
        stats = stack.stats()
    done_at = sorted(seen[k] - t0 for k in seen)
    latencies = sorted(seen[k] - uploaded_at[wanted[k]] for k in seen)
    n = len(done_at)
    if n >= 10:
        lo, hi = int(n * 0.1), int(n * 0.9) - 1
        sustained_rpm = (hi - lo) / (done_at[hi] - done_at[lo]) * 60 if done_at[hi] > done_at[lo] else 0.0
    else:
        sustained_rpm = 0.0
    overall_rpm = n / done_at[-1] * 60 if n else 0.0
    successes = engine_stats["by_outcome"].get("success", 0)
    images = max(1, n)
    invocations = stats.get("list", [])
    return {
        "workload": asdict(w),
        "uploads": w.uploads, "burst_upload_s": round(burst_s, 2),
        "records": n, "lost": w.uploads - n,
        "records_written_more_than_once": sum(1 for c in versions.values() if c > 1),
        "status_sample": statuses,
        "completions_per_minute_sustained": round(sustained_rpm, 1),
        "completions_per_minute_overall": round(overall_rpm, 1),
        "quota_rpm": w.quota_rpm,
        "share_of_quota_sustained": round(sustained_rpm / w.quota_rpm, 3),
        "model_calls": engine_stats["total"], "model_successes": successes,
        "model_calls_per_job": round(engine_stats["total"] / images, 3),
        "engine_outcomes": engine_stats["by_outcome"], "engine_in_flight_peak": engine_stats["in_flight_peak"],
        "latency_p50_s": round(percentile(latencies, 0.5), 2), "latency_p95_s": round(percentile(latencies, 0.95), 2),
        "latency_max_s": round(latencies[-1], 2) if latencies else None,
        "dlq": dlq,
        "completion_times_s": [round(t, 2) for t in done_at],
        "lambda": {k: stats.get(k) for k in ("memory_size_mb", "invocations", "records", "failed_records", "errors",
                                             "timeouts", "cold_starts", "init_duration_ms", "billed_duration_ms",
                                             "gb_seconds", "max_in_flight")},
        "gb_seconds_per_image": round(stats.get("gb_seconds", 0.0) / images, 4),
        "max_memory_used_mb": max((i["max_memory_used_mb"] for i in invocations), default=0),
        "invocation_durations_ms": [round(i["duration_ms"]) for i in invocations],
        "records_per_invocation": [i["records"] for i in invocations],
    }


def report(res: dict) -> None:
    w = res["workload"]
    print(table(["metric", "value", "target", "verdict"], [
        ("uploads (burst)", res["uploads"], "", ""),
        ("config", " ".join(w["context"]), "", ""),
        ("engine latency", f"{w['latency_ms']} ms + U(0, {w['jitter_ms']}) ms", "", ""),
        ("completions/min sustained (10-90 %)", res["completions_per_minute_sustained"],
         f">= {0.9 * w['quota_rpm']:.0f}", verdict(res["share_of_quota_sustained"] >= 0.9)),
        ("share of quota", res["share_of_quota_sustained"], ">= 0.9", verdict(res["share_of_quota_sustained"] >= 0.9)),
        ("lost jobs", res["lost"], "0", verdict(res["lost"] == 0)),
        ("records written more than once", res["records_written_more_than_once"], "0",
         verdict(res["records_written_more_than_once"] == 0)),
        ("model calls per job", res["model_calls_per_job"], "<= 1.05", verdict(res["model_calls_per_job"] <= 1.05)),
        ("engine outcomes", res["engine_outcomes"], "", ""),
        ("latency p50 / p95 (s)", f"{res['latency_p50_s']} / {res['latency_p95_s']}", "", ""),
        ("DLQ messages", res["dlq"], "0", verdict(res["dlq"] == 0)),
        ("invocations / cold starts", f"{res['lambda']['invocations']} / {res['lambda']['cold_starts']}", "", ""),
        ("GB-s per image", res["gb_seconds_per_image"], "", ""),
        ("max memory used (MB)", res["max_memory_used_mb"], "", ""),
    ]))


def targets(res: dict) -> dict:
    return {
        "share_of_quota": {"value": res["share_of_quota_sustained"], "target": ">= 0.9",
                           "holds": res["share_of_quota_sustained"] >= 0.9},
        "lost_jobs": {"value": res["lost"] + res["records_written_more_than_once"], "target": "0",
                      "holds": res["lost"] == 0 and res["records_written_more_than_once"] == 0},
        "model_calls_per_job": {"value": res["model_calls_per_job"], "target": "<= 1.05",
                                "holds": res["model_calls_per_job"] <= 1.05},
        "dlq": {"value": res["dlq"], "target": "0", "holds": res["dlq"] == 0},
    }


def main(quick: bool = False) -> dict:
    res = run_workload(QUICK if quick else FULL)
    report(res)
    payload = {"quick": quick, **res, "targets": targets(res)}
    write_results("throughput", payload)
    return payload


if __name__ == "__main__":
    run_as_script(main, __doc__)
