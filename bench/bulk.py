"""Bulk jobs through the whole local stack: a 1,000-row manifest under a model quota (issue 17).

The catalogue (small generated PNGs) sits under an excluded prefix of the input bucket, so its uploads
start nothing; `img2img_local.bulk.submit` (what `img2img bulk submit` runs) stores the manifest and the
progress item and starts the emulated S3 Batch Operations job, which invokes the enqueue function once per
row; the worker paces the model with the shared limiter (the local stack's quota table, made for
`modelQuotas` as the CDK stack makes it) at the engine's quota for remove-background. `bulk.watch` prints
the progress bar from the counter item, as `img2img bulk status --watch` does; the bench keeps every line with its time.

Reported: rows per minute against the quota (from the progress item's counts, 10-90 % of the rows), the
time to all records, the enqueue rate (the Batch Operations job's own end), that the output bucket has
exactly one record per row (one version each) and that the progress item's counts, the records' statuses
and the completion report agree, the progress bar updates seen, model calls per row, the DLQ.
"""
from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass

from bench.common import run_as_script, table, verdict, write_results
from bench.quota import RB_ENGINE, REMOVE_BACKGROUND, _job_model
from bench.throughput import quiet_workers

CATALOGUE = "catalogue/"
OUTPUT_PREFIX = "bulk/bench/"


@dataclass
class BulkRun:
    rows: int = 1000
    quota_rpm: int = 600
    latency_ms: int = 1000
    jitter_ms: int = 300
    # Little's law: 600/min x ~1.3 s per call / 60 = 13 calls in flight; the limiter does the pacing.
    context: tuple[str, ...] = ("batchSize=4", "bedrockMaxConcurrency=32", "batchWindowSeconds=0")
    watch_interval_s: float = 1.0
    timeout_s: float = 900.0
    label: str = "full"


FULL = BulkRun()
QUICK = BulkRun(rows=200, timeout_s=240.0, label="quick")


class TimedLines(io.TextIOBase):
    """What `bulk.watch` prints, line by line, each with the time it was printed."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.lines.append((time.monotonic(), line))
        return len(text)

    def isatty(self) -> bool:
        return False


def _photo(n: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (128, 128), (n * 7 % 256, n * 13 % 256, 200 - n % 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _done_of(line: str) -> int:
    """`[####....] 412/1000  succeeded 412 ...` -> 412."""
    return int(line.split("] ", 1)[1].split("/", 1)[0])


def run_bulk(b: BulkRun) -> dict:
    with quiet_workers(f"workers-bulk-{b.label}"):
        return _run_bulk(b)


def _run_bulk(b: BulkRun) -> dict:
    from img2img.core import bulk as core_bulk
    from img2img.core.records import record_key
    from img2img_local import bulk
    from img2img_local.batch_operations import read_report
    from img2img_local.engine import EngineConfig
    from img2img_local.project import load_pipeline_config
    from img2img_local.stack import LocalStack

    logging.getLogger("img2img_local").setLevel(logging.WARNING)
    called, _ = _job_model(REMOVE_BACKGROUND)
    config = load_pipeline_config(["logLevel=WARNING", "sidecarGraceSeconds=0", f'excludedPrefixes=["{CATALOGUE}"]',
                                   *b.context, f"modelQuotas={json.dumps({called: b.quota_rpm})}"])
    engine = EngineConfig(latency_ms=0, jitter_ms=b.jitter_ms, model_requests_per_minute={RB_ENGINE: b.quota_rpm},
                          model_latency_ms={RB_ENGINE: b.latency_ms}, seed=7)
    stack = LocalStack(config, engine_config=engine, visibility_timeout_seconds=120, serve_api=False)
    keys = [f"{CATALOGUE}item {n:04d}.png" for n in range(b.rows)]  # a space: keys URL-encoded in the manifest
    with stack:
        r = stack.resources
        s3 = stack.client("s3")
        clients = [stack.client("s3") for _ in range(4)]
        t_upload = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: clients[n % 4].put_object(Bucket=r.input_bucket, Key=keys[n], Body=_photo(n)),
                          range(b.rows)))
        upload_s = time.monotonic() - t_upload

        target = bulk.stack_target(stack)
        manifest = core_bulk.encode_manifest((r.input_bucket, key, None) for key in keys)
        printed = io.StringIO()
        t0 = time.monotonic()
        bulk_id, job_id = bulk.submit(target, manifest, {"operation": REMOVE_BACKGROUND}, OUTPUT_PREFIX, out=printed)
        enqueued_at: list[float] = []
        threading.Thread(target=lambda: (stack.batch_operations.wait(job_id), enqueued_at.append(time.monotonic())),
                         daemon=True).start()
        bars = TimedLines()
        progress = bulk.watch(target, bulk_id, out=bars, interval=b.watch_interval_s, timeout=b.timeout_s)
        finished_at = time.monotonic()
        job = stack.batch_operations.wait(job_id, timeout=60)
        time.sleep(2.0)  # let a late duplicate (a record written twice) show up before counting versions

        wanted = {record_key(OUTPUT_PREFIX, key) for key in keys}
        versions: dict[str, int] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=r.output_bucket, Prefix=OUTPUT_PREFIX):
            for v in page.get("Versions", []):
                if v["Key"] in wanted:
                    versions[v["Key"]] = versions.get(v["Key"], 0) + 1
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            heads = list(pool.map(lambda k: s3.head_object(Bucket=r.output_bucket, Key=k)["Metadata"].get("status"),
                                  sorted(versions)))
        record_statuses: dict[str, int] = {}
        for status in heads:
            record_statuses[status] = record_statuses.get(status, 0) + 1
        report_keys = stack.batch_operations.report_keys(job_id)
        report = read_report(s3, r.output_bucket, report_keys[0]) if report_keys else []
        report_counts: dict[str, int] = {}
        for row in report:
            report_counts[row["TaskStatus"]] = report_counts.get(row["TaskStatus"], 0) + 1
        dlq = int(stack.client("sqs").get_queue_attributes(QueueUrl=r.dlq_url, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        engine_stats = stack.engine.stats()
        lambda_stats = stack.stats()

    # Rows per minute from the progress bar itself: the lines' (time, done) between 10 % and 90 % of the rows.
    points = [(t - t0, _done_of(line)) for t, line in bars.lines]
    lo = next(((t, d) for t, d in points if d >= 0.1 * b.rows), None)
    hi = next(((t, d) for t, d in points if d >= 0.9 * b.rows), None)
    sustained = (hi[1] - lo[1]) / (hi[0] - lo[0]) * 60 if lo and hi and hi[0] > lo[0] else 0.0
    all_records_s = finished_at - t0
    distinct = len({line.split("  ")[0] for _, line in bars.lines})  # bar + counts changed
    outcomes = engine_stats["by_model"].get(RB_ENGINE, {})
    calls = sum(outcomes.values())
    records = len(versions)
    return {
        "run": asdict(b), "rows": b.rows, "upload_s": round(upload_s, 1),
        "submit_printed": printed.getvalue().splitlines(),
        "records": records, "lost": b.rows - records,
        "records_written_more_than_once": sum(1 for c in versions.values() if c > 1),
        "record_statuses": record_statuses,
        "progress_counts": progress.counts, "progress_errors": progress.errors, "progress_finished": progress.finished,
        "report_rows": len(report), "report_counts": report_counts,
        "counts_match": (progress.finished and progress.done == records == len(report) == b.rows
                         and progress.counts == record_statuses),
        "batch_job": job["Status"], "batch_job_progress": job["ProgressSummary"],
        "enqueue_s": round(enqueued_at[0] - t0, 1) if enqueued_at else None,
        "enqueue_rows_per_minute": round(b.rows / (enqueued_at[0] - t0) * 60, 1) if enqueued_at else None,
        "time_to_all_records_s": round(all_records_s, 1),
        "ideal_drain_s": round(b.rows / b.quota_rpm * 60, 1),
        "rows_per_minute_overall": round(b.rows / all_records_s * 60, 1) if progress.finished else 0.0,
        "rows_per_minute_sustained": round(sustained, 1), "quota_rpm": b.quota_rpm,
        "share_of_quota": round(sustained / b.quota_rpm, 3),
        "progress_lines": len(bars.lines), "progress_updates_distinct": distinct,
        "progress_first_last": [bars.lines[0][1], bars.lines[-1][1]] if bars.lines else [],
        "progress_timeline": [(round(t, 1), d) for t, d in points],
        "model_calls": calls, "model_calls_per_row": round(calls / max(1, records), 3),
        # Messages the worker took per row: 1, plus a delayed copy each time the limiter said "not yet".
        "deliveries_per_row": round((lambda_stats.get("records") or 0) / max(1, records), 2),
        "throttled": outcomes.get("throttled", 0), "engine_outcomes": outcomes, "dlq": dlq,
        "lambda": {k: lambda_stats.get(k) for k in ("invocations", "records", "failed_records", "errors",
                                                    "timeouts", "cold_starts", "max_in_flight")},
    }


def targets(res: dict) -> dict:
    return {
        "records": {"value": res["records"], "target": f"== {res['rows']}, once each",
                    "holds": res["lost"] == 0 and res["records_written_more_than_once"] == 0},
        "counts_match": {"value": res["counts_match"], "target": "progress == records == report",
                         "holds": bool(res["counts_match"])},
        "share_of_quota": {"value": res["share_of_quota"], "target": ">= 0.9", "holds": res["share_of_quota"] >= 0.9},
        "progress_live": {"value": res["progress_updates_distinct"], "target": ">= 10 distinct bars",
                          "holds": res["progress_updates_distinct"] >= 10},
        "dlq": {"value": res["dlq"], "target": "0", "holds": res["dlq"] == 0},
    }


def report(res: dict, checks: dict) -> None:
    print(table(["metric", "value", "target", "verdict"], [
        ("rows (manifest)", res["rows"], "", ""),
        ("config", " ".join(res["run"]["context"]), "", ""),
        ("engine", f"remove-background {res['run']['latency_ms']} ms + U(0, {res['run']['jitter_ms']}) ms, "
                   f"quota {res['quota_rpm']}/min", "", ""),
        ("records (written more than once)", f"{res['records']} ({res['records_written_more_than_once']})",
         checks["records"]["target"], verdict(checks["records"]["holds"])),
        ("progress / records / report", f"{res['progress_counts']} / {res['record_statuses']} / "
                                        f"{res['report_counts']}", "equal", verdict(res["counts_match"])),
        ("rows/min sustained (10-90 %)", res["rows_per_minute_sustained"], f">= {0.9 * res['quota_rpm']:.0f}",
         verdict(checks["share_of_quota"]["holds"])),
        ("share of quota", res["share_of_quota"], ">= 0.9", verdict(checks["share_of_quota"]["holds"])),
        ("time to all records (ideal) s", f"{res['time_to_all_records_s']} ({res['ideal_drain_s']})", "", ""),
        ("enqueue (Batch Operations job) s, rows/min", f"{res['enqueue_s']}, {res['enqueue_rows_per_minute']}", "", ""),
        ("progress bar lines (distinct)", f"{res['progress_lines']} ({res['progress_updates_distinct']})",
         ">= 10 distinct", verdict(checks["progress_live"]["holds"])),
        ("model calls per row (throttled)", f"{res['model_calls_per_row']} ({res['throttled']})", "", ""),
        ("worker deliveries per row (quota waits)", res["deliveries_per_row"], "", ""),
        ("DLQ", res["dlq"], "0", verdict(checks["dlq"]["holds"])),
    ]))


def main(quick: bool = False) -> dict:
    res = run_bulk(QUICK if quick else FULL)
    checks = targets(res)
    report(res, checks)
    payload = {"quick": quick, **res, "targets": checks}
    write_results("bulk", payload)
    return payload


if __name__ == "__main__":
    run_as_script(main, __doc__)
