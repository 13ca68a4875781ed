"""Per-job overhead (issue 14, benchmark 4): upload -> record minus the model's latency, and the S3 and
DynamoDB requests each job makes, counted by the server.

The whole local stack (`img2img_local.stack.LocalStack`: moto, the emulated event source with real
worker processes, the offline engine at a fixed latency). Requests are counted where they arrive: a
wrapper around moto's WSGI application (it runs in this process) logs every request with its arrival
and completion time, its service (from the SigV4 credential scope), its kind (S3: GET / HEAD / PUT /
LIST / DELETE by method and path; DynamoDB: the X-Amz-Target operation) and its User-Agent. The bench's
own clients carry a User-Agent marker and are left out, so what is counted is what the worker sent.
A job with a sidecar counts the sidecar's own event too (uploaded first: it finds no image yet).

Jobs run one at a time (each job's requests are the ones between its upload and the moment the
worker goes quiet), then a few at once (requests per job = total / jobs). Timing is server-side too:
upload = the end of the bench's PutObject (moto has queued the S3 event by then), record = the arrival
of the worker's PutObject of the record; the model's latency is the configured one, and also the
window the worker observed (end of the checkpoint GET before the call -> start of the checkpoint PUT
after it), which includes the engine's rendering. The batching window is 0 here (the default 1 s is a
deliberate wait for a fuller batch, not overhead); `default_window` measures it with the default.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from bench.common import SAMPLES, percentile, run_as_script, table, verdict, write_results
from bench.throughput import quiet_workers

BENCH_UA = "img2img-overhead-bench"
TARGET_OVERHEAD_S = 0.5
TARGET_S3_PER_JOB = 5


@dataclass(frozen=True)
class Request:
    start: float
    end: float
    service: str
    kind: str
    bucket: str
    key: str
    bench: bool


class RequestLog:
    """Every request moto receives (installed around its WSGI app before the stack starts)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self._saved = None

    def install(self) -> None:
        from moto.moto_server import werkzeug_app

        cls = werkzeug_app.DomainDispatcherApplication
        self._saved = original = cls.__call__
        log = self

        def counted(app, environ, start_response):
            started = time.monotonic()
            try:
                return original(app, environ, start_response)
            finally:
                log.add(environ, started, time.monotonic())

        cls.__call__ = counted

    def uninstall(self) -> None:
        from moto.moto_server import werkzeug_app

        if self._saved is not None:
            werkzeug_app.DomainDispatcherApplication.__call__ = self._saved

    def add(self, environ: dict, start: float, end: float) -> None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        service = auth.split("Credential=", 1)[1].split("/")[3] if "Credential=" in auth else "?"
        method = environ.get("REQUEST_METHOD", "")
        path = unquote(environ.get("PATH_INFO", ""))
        bucket, _, key = path.lstrip("/").partition("/")
        if service == "s3":
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            kind = method
            if method == "GET" and not key:
                kind = "LIST_VERSIONS" if "versions" in query else "LIST"
        elif service == "dynamodb":
            kind = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        else:
            kind = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2] or method
        with self.lock:
            self.requests.append(Request(start, end, service, kind, bucket, key,
                                         BENCH_UA in environ.get("HTTP_USER_AGENT", "")))

    def worker_since(self, index: int) -> list[Request]:
        with self.lock:
            return [r for r in self.requests[index:] if not r.bench and r.service in ("s3", "dynamodb")]

    def __len__(self) -> int:
        with self.lock:
            return len(self.requests)


def _bench_client(stack, service: str):
    import boto3
    from botocore.config import Config

    from img2img_local.stack import FAKE_CREDENTIALS, REGION

    return boto3.client(service, endpoint_url=stack.endpoint_url, region_name=REGION,
                        config=Config(user_agent_extra=BENCH_UA), **FAKE_CREDENTIALS)


def _wait_quiet(log: RequestLog, since: int, record_key: str, timeout: float, quiet_s: float = 0.6) -> bool:
    """Until the worker has written `record_key` and then sent nothing for `quiet_s`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = log.worker_since(since)
        if (any(r.kind == "PUT" and r.key == record_key for r in seen)
                and time.monotonic() - max(r.end for r in seen) > quiet_s):
            return True
        time.sleep(0.05)
    return False


def _job_numbers(requests: list[Request], uploaded: float, record_key: str, staging: str,
                 latency_s: float) -> dict:
    record = next(r for r in requests if r.kind == "PUT" and r.key == record_key)
    before = [r for r in requests if r.kind == "GET" and staging in r.key and r.end <= record.start]
    after = [r for r in requests if r.kind == "PUT" and staging in r.key and not r.key.endswith(".json")]
    model_window = (after[0].start - before[-1].end) if before and after else None
    total = record.start - uploaded
    s3 = Counter(r.kind for r in requests if r.service == "s3")
    ddb = Counter(r.kind for r in requests if r.service == "dynamodb")
    return {"upload_to_record_s": round(total, 4),
            "overhead_s": round(total - latency_s, 4),
            "model_window_s": round(model_window, 4) if model_window is not None else None,
            "overhead_vs_observed_model_s": round(total - model_window, 4) if model_window is not None else None,
            "first_worker_request_after_upload_s": round(min(r.start for r in requests) - uploaded, 4),
            "timeline": [(round(r.start - uploaded, 4), round(r.end - r.start, 4), r.service, r.kind,
                          r.key.rpartition("/")[2][:24]) for r in requests],
            "s3": dict(sorted(s3.items())), "s3_total": sum(s3.values()),
            "dynamodb": dict(sorted(ddb.items())), "dynamodb_total": sum(ddb.values())}


def run(sequential: int, parallel: int, latency_ms: int, context: tuple[str, ...], label: str) -> dict:
    from img2img.core.records import STAGING_DIR, record_key
    from img2img_local.engine import EngineConfig
    from img2img_local.project import load_pipeline_config
    from img2img_local.stack import LocalStack

    logging.getLogger("img2img_local").setLevel(logging.WARNING)
    config = load_pipeline_config(["logLevel=WARNING", "sidecarGraceSeconds=0", *context])
    engine = EngineConfig(latency_ms=latency_ms, jitter_ms=0, seed=7)
    body = (SAMPLES / "coffee.png").read_bytes()
    latency_s = latency_ms / 1000
    log = RequestLog()
    log.install()
    jobs: dict[str, list[dict]] = {"plain": [], "sidecar": []}
    group: dict = {}
    try:
        with quiet_workers(f"workers-overhead-{label}"), LocalStack(config, engine_config=engine) as stack:
            r = stack.resources
            s3 = _bench_client(stack, "s3")
            staging = f"{config.output_prefix}{STAGING_DIR}"

            def one(kind: str, i: int, warm: bool = False) -> dict | None:
                key = f"ov/{label}/{kind}/img-{i:03d}.png"
                since = len(log)
                metadata = {"prompt": "a watercolor painting", "seed": str(i + 1)}
                if kind == "sidecar":  # the sidecar first, then the image it belongs to (no metadata)
                    s3.put_object(Bucket=r.input_bucket, Key=key + ".json",
                                  Body=b'{"prompt": "a watercolor painting", "seed": %d}' % (i + 1))
                    time.sleep(0.5 + float(config.batch_window_seconds))  # its own event is handled first
                    metadata = {}
                s3.put_object(Bucket=r.input_bucket, Key=key, Body=body, Metadata=metadata)
                uploaded = next(q.end for q in reversed(log.requests) if q.bench and q.key == key)
                rkey = record_key(config.output_prefix, key)
                if not _wait_quiet(log, since, rkey, timeout=60 + latency_s):
                    raise RuntimeError(f"no record for {key}")
                if warm:
                    return None
                return {"key": key, **_job_numbers(log.worker_since(since), uploaded, rkey, staging, latency_s)}

            one("plain", 999, warm=True)  # the sandbox's cold start is bench/cold_start.py's business
            for i in range(sequential):
                jobs["plain"].append(one("plain", i))
            for i in range(max(1, sequential // 4)):
                jobs["sidecar"].append(one("sidecar", i))
            if parallel:
                since = len(log)
                keys = [f"ov/{label}/parallel/img-{i:03d}.png" for i in range(parallel)]
                uploaded = {}
                for i, key in enumerate(keys):
                    s3.put_object(Bucket=r.input_bucket, Key=key, Body=body,
                                  Metadata={"prompt": "a watercolor painting", "seed": str(i + 1)})
                    uploaded[key] = time.monotonic()
                for key in keys:
                    _wait_quiet(log, since, record_key(config.output_prefix, key), timeout=60 + 4 * latency_s)
                seen = log.worker_since(since)
                s3_kinds = Counter(q.kind for q in seen if q.service == "s3")
                ddb_kinds = Counter(q.kind for q in seen if q.service == "dynamodb")
                overheads = []
                for key in keys:
                    rec = next(q for q in seen if q.kind == "PUT" and q.key == record_key(config.output_prefix, key))
                    overheads.append(rec.start - uploaded[key] - latency_s)
                group = {"jobs": parallel, "overhead_p50_s": round(percentile(overheads, 0.5), 4),
                         "overhead_p95_s": round(percentile(overheads, 0.95), 4),
                         "s3_per_job": {k: round(v / parallel, 2) for k, v in sorted(s3_kinds.items())},
                         "s3_total_per_job": round(sum(s3_kinds.values()) / parallel, 2),
                         "dynamodb_per_job": {k: round(v / parallel, 2) for k, v in sorted(ddb_kinds.items())},
                         "dynamodb_total_per_job": round(sum(ddb_kinds.values()) / parallel, 2)}
    finally:
        log.uninstall()
    plain = jobs["plain"]
    overheads = [j["overhead_s"] for j in plain]
    observed = [j["overhead_vs_observed_model_s"] for j in plain if j["overhead_vs_observed_model_s"] is not None]
    return {"label": label, "context": list(context), "latency_ms": latency_ms,
            "sequential_jobs": len(plain),
            "overhead_p50_s": round(percentile(overheads, 0.5), 4),
            "overhead_p95_s": round(percentile(overheads, 0.95), 4),
            "overhead_vs_observed_model_p50_s": round(percentile(observed, 0.5), 4),
            "delivery_p50_s": round(percentile([j["first_worker_request_after_upload_s"] for j in plain], 0.5), 4),
            # Steady state: the median job. The maximum is a sandbox's first job in a folder within the
            # cache time (it reads the folder-defaults chain: one GET per level).
            "s3_per_plain_job": _typical(plain),
            "s3_total_per_plain_job": round(percentile([j["s3_total"] for j in plain], 0.5), 1),
            "s3_total_per_plain_job_max": max((j["s3_total"] for j in plain), default=0),
            "dynamodb_per_plain_job": plain[0]["dynamodb"] if plain else {},
            "parallel_note": "requests per job = all the worker's requests / jobs",
            "dynamodb_total_per_plain_job_max": max((j["dynamodb_total"] for j in plain), default=0),
            "s3_per_sidecar_job": _typical(jobs["sidecar"]),
            "s3_total_per_sidecar_job": round(percentile([j["s3_total"] for j in jobs["sidecar"]], 0.5), 1),
            "s3_total_per_sidecar_job_max": max((j["s3_total"] for j in jobs["sidecar"]), default=0),
            "parallel": group, "jobs": jobs}


def _typical(jobs: list[dict]) -> dict:
    """The request mix of the median job (by total)."""
    if not jobs:
        return {}
    ordered = sorted(jobs, key=lambda j: j["s3_total"])
    return ordered[len(ordered) // 2]["s3"]


def report(runs: list[dict]) -> None:
    rows = []
    for res in runs:
        rows += [
            (f"[{res['label']}] overhead p50 / p95 (s)", f"{res['overhead_p50_s']} / {res['overhead_p95_s']}",
             f"p50 <= {TARGET_OVERHEAD_S}", verdict(res["overhead_p50_s"] <= TARGET_OVERHEAD_S)),
            (f"[{res['label']}] overhead vs observed model window p50 (s)", res["overhead_vs_observed_model_p50_s"],
             "", ""),
            (f"[{res['label']}] upload -> first worker request p50 (s)", res["delivery_p50_s"], "", ""),
            (f"[{res['label']}] S3 requests, plain job (median; max)", f"{res['s3_total_per_plain_job']} "
             f"{res['s3_per_plain_job']}; {res['s3_total_per_plain_job_max']}", f"<= {TARGET_S3_PER_JOB}",
             verdict(res["s3_total_per_plain_job"] <= TARGET_S3_PER_JOB)),
            (f"[{res['label']}] S3 requests, job with a sidecar (median; max)", f"{res['s3_total_per_sidecar_job']} "
             f"{res['s3_per_sidecar_job']}; {res['s3_total_per_sidecar_job_max']}", "", ""),
            (f"[{res['label']}] DynamoDB requests, plain job", f"{res['dynamodb_total_per_plain_job_max']} "
             f"{res['dynamodb_per_plain_job']}", "", ""),
        ]
        if res["parallel"]:
            p = res["parallel"]
            rows.append((f"[{res['label']}] {p['jobs']} at once: overhead p50 / p95 (s), S3 / DynamoDB per job",
                         f"{p['overhead_p50_s']} / {p['overhead_p95_s']}, {p['s3_total_per_job']} / "
                         f"{p['dynamodb_total_per_job']}", "", ""))
    print(table(["metric", "value", "target", "verdict"], rows))


def main(quick: bool = False) -> dict:
    latency_ms = 1000
    runs = [run(5 if quick else 20, 3 if quick else 6, latency_ms, ("batchWindowSeconds=0",), "window0")]
    if not quick:
        runs.append(run(8, 0, latency_ms, (), "default_window"))
    report(runs)
    main_run = runs[0]
    targets = {
        "overhead_p50": {"value": main_run["overhead_p50_s"], "target": f"<= {TARGET_OVERHEAD_S}",
                         "holds": main_run["overhead_p50_s"] <= TARGET_OVERHEAD_S},
        "s3_requests_per_plain_job": {"value": main_run["s3_total_per_plain_job"],
                                      "target": f"<= {TARGET_S3_PER_JOB}",
                                      "holds": main_run["s3_total_per_plain_job"] <= TARGET_S3_PER_JOB},
    }
    payload = {"quick": quick, "runs": runs, "targets": targets}
    write_results("overhead", payload)
    return payload


if __name__ == "__main__":
    run_as_script(main, __doc__)
