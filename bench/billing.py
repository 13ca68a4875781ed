"""Billed Lambda GB-seconds per image: concurrent batch processing against sequential, at equal throughput.

Both runs are the throughput workload (bench/throughput.py: same burst, engine latency and quota); the
bill is the event source emulation's own accounting (`stack.stats()`: billed duration incl. INIT x memory,
per invocation). Concurrent: IMG2IMG_BATCH_CONCURRENCY = batch size (the config's default) on the
config's event-source concurrency. Sequential: the same batch size processed one record at a time
(IMG2IMG_BATCH_CONCURRENCY=1), with as many sandboxes as it takes to keep the same Bedrock calls in flight
minus one (so it, too, stays under the quota) — the same throughput, the way you would have to run it.
The concurrent side reuses bench/results/throughput.json when it comes from the same mode (quick/full).
"""
from __future__ import annotations

import json
import math
from dataclasses import replace

from bench.common import RESULTS, run_as_script, table, verdict, write_results
from bench.throughput import FULL, QUICK, report, run_workload


def _concurrent(quick: bool) -> dict:
    path = RESULTS / "throughput.json"
    if path.exists():
        doc = json.loads(path.read_text())
        if doc.get("quick") == quick:
            return doc
    return run_workload(QUICK if quick else FULL)


def memory_recommendation(results: list[dict], batch: int) -> dict:
    """Memory size from measured peaks: the worker's peak RSS in this run, and the worst case of a batch
    of large inputs prepared at once (bench/results/image_prep.json), rounded up with 25 % headroom."""
    measured = max(r["max_memory_used_mb"] for r in results)
    worst_per_image = 0.0
    path = RESULTS / "image_prep.json"
    if path.exists():
        prep = json.loads(path.read_text())
        worst_per_image = max((r["peak_rss_mib"] for r in prep["results"]
                               if r["method"] == "ours" and r["stage"] == "request"), default=0.0)
    worst = measured + batch * worst_per_image
    recommended = max(512, int(math.ceil(worst * 1.25 / 128) * 128))
    return {"measured_peak_mb": measured, "worst_input_peak_mb_per_image": round(worst_per_image, 1),
            "batch": batch, "worst_case_mb": round(worst), "recommended_memory_mb": recommended}


def main(quick: bool = False) -> dict:
    concurrent = _concurrent(quick)
    base = QUICK if quick else FULL
    batch = int(next(c for c in base.context if c.startswith("batchSize=")).split("=")[1])
    in_flight = int(next(c for c in base.context if c.startswith("bedrockMaxConcurrency=")).split("=")[1])
    sequential = run_workload(replace(base, label="sequential", batch_concurrency=1,
                                      event_source_concurrency=max(2, in_flight - 1)))
    print("sequential run:")
    report(sequential)
    c, s = concurrent["gb_seconds_per_image"], sequential["gb_seconds_per_image"]
    ratio = s / c if c else float("nan")
    rows = []
    for name, r, conc in (("concurrent", concurrent, batch), ("sequential", sequential, 1)):
        lam = r["lambda"]
        rows.append((name, f"{batch} / {conc}", lam["max_in_flight"], lam["invocations"], lam["cold_starts"],
                     round(lam["billed_duration_ms"] / 1000, 1), round(lam["gb_seconds"], 1),
                     r["gb_seconds_per_image"], r["completions_per_minute_sustained"], r["model_calls_per_job"],
                     r["lost"], r["dlq"]))
    print()
    print(table(["run", "batch size / concurrency", "sandboxes busy (peak)", "invocations", "cold starts",
                 "billed s", "GB-s", "GB-s per image", "images/min", "calls/job", "lost", "DLQ"], rows))
    memory = memory_recommendation([concurrent, sequential], batch)
    print(f"\nsequential / concurrent GB-s per image = {ratio:.1f}x (target >= 5x: {verdict(ratio >= 5)})")
    print(f"memory: measured peak {memory['measured_peak_mb']} MB; a batch of {batch} worst-case inputs "
          f"~{memory['worst_case_mb']} MB -> recommend {memory['recommended_memory_mb']} MB")
    payload = {"quick": quick, "memory_size_mb": concurrent["lambda"]["memory_size_mb"],
               "concurrent": {k: v for k, v in concurrent.items() if k not in ("machine", "benchmark")},
               "sequential": sequential, "gb_seconds_ratio": round(ratio, 2), "memory": memory,
               "targets": {"gb_seconds_per_image_ratio": {"value": round(ratio, 2), "target": ">= 5",
                                                          "holds": ratio >= 5}}}
    write_results("billing", payload)
    return payload


if __name__ == "__main__":
    run_as_script(main, __doc__)
