"""Cold start: the time a fresh worker process needs before it can serve its first job.

What ships is measured: the Lambda bundle built by infra/bundling.py (for this machine's architecture and
the configured `pythonVersion`), imported only from that folder by an interpreter of that version (as
Lambda's runtime does), never the dev venv. Twice: as bundled (with its bytecode) and with the bytecode
removed and none written (PYTHONDONTWRITEBYTECODE, like Lambda's read-only /var/task), which is what a
bundle without bytecode costs on every cold start.

Measured in fresh interpreters (several repetitions, interleaved, median) with the environment a Lambda
sandbox of the local stack has (the IMG2IMG_* settings from infra/config.py, the Powertools variables,
fake credentials, the region, Lambda's reserved variables):

- worker: import img2img.handlers.sqs_worker, call img2img.assembly.get_pipeline() and touch every
  lazily built boto3 client a first job uses (S3, bedrock-runtime, DynamoDB for idempotency, EventBridge);
- floor: import boto3 and PIL.Image and create one boto3 client, which no Python worker can avoid.

Target (issue 14, benchmark 5): worker / floor <= 1.2, wall time. Each process also reports its CPU time:
on a machine shared with other work the CPU ratio moves less than the wall-clock one.

The worker is measured twice: with tracing off (the local stack, and deployments that turn X-Ray off) and
with tracing on, as the CDK stack deploys it (X-Ray active: the X-Ray SDK must be imported).

Interpreter start-up (the same for both) is not included: each process times itself from its first line.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import median, run_as_script, table, verdict, write_results

TARGET = 1.2  # worker / floor (issue 14, benchmark 5)

WORKER = """
import time, sys
c0, t0 = time.process_time(), time.perf_counter()
import img2img.handlers.sqs_worker
t1 = time.perf_counter()
from img2img.assembly import get_pipeline
p = get_pipeline()
t2 = time.perf_counter()
p.store.s3; p.model.runtime; p.events.events
t3, c3 = time.perf_counter(), time.process_time()
import json
print(json.dumps({"total_ms": (t3 - t0) * 1000, "import_ms": (t1 - t0) * 1000, "pipeline_ms": (t2 - t1) * 1000,
                  "clients_ms": (t3 - t2) * 1000, "cpu_ms": (c3 - c0) * 1000, "modules": len(sys.modules)}))
"""

FLOOR = """
import time, sys
c0, t0 = time.process_time(), time.perf_counter()
import boto3
import PIL.Image
boto3.client("s3")
t1, c1 = time.perf_counter(), time.process_time()
import json
print(json.dumps({"total_ms": (t1 - t0) * 1000, "cpu_ms": (c1 - c0) * 1000, "modules": len(sys.modules)}))
"""


def sandbox_environment() -> dict[str, str]:
    """What an emulated Lambda sandbox of the local stack gets (img2img_local.stack.LocalStack), offline."""
    from img2img_local.lambda_runtime import FunctionSpec, lambda_environment
    from img2img_local.project import load_pipeline_config

    config = load_pipeline_config()
    env = config.worker_settings(
        input_bucket="img2img-local-input", output_bucket="img2img-local-output",
        idempotency_table="img2img-local-idempotency",
        job_queue_url="http://127.0.0.1:9/123456789012/img2img-local-jobs",
        event_bus_name="img2img-local-bus").to_env()
    env.update(config.powertools_env())
    env.update({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:9",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"})
    spec = FunctionSpec(handler="img2img.handlers.sqs_worker.handler", environment=env,
                        memory_mb=config.worker_memory_mb)
    return lambda_environment(spec, "2026/01/01/[$LATEST]bench")


def built_asset(workdir: Path) -> tuple[Path, Path, str, dict]:
    """The bundle as the stack ships it, for this machine's architecture; a copy without bytecode; the
    interpreter of the runtime's version; what was built."""
    from img2img_local.project import load_pipeline_config

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # infra imports aws_cdk
    from infra.bundling import LocalPipBundler, find_interpreter

    version = load_pipeline_config().python_version
    python = find_interpreter(version)
    if python is None:
        raise SystemExit(f"cold_start: no Python {version} interpreter (python{version}, pyenv, "
                         "IMG2IMG_BUNDLE_PYTHON): the bundle must be measured under the runtime's version")
    architecture = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    asset = workdir / "asset"
    LocalPipBundler(architecture=architecture, python_version=version).bundle(asset)
    bare = workdir / "asset-no-bytecode"
    shutil.copytree(asset, bare, ignore=shutil.ignore_patterns("__pycache__"))
    pycs = sum(1 for _ in asset.rglob("*.pyc"))
    size = sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())
    return asset, bare, python, {"python_version": version, "architecture": architecture, "interpreter": python,
                                 "pyc_files": pycs, "asset_mb": round(size / 2**20, 1)}


def on_asset(env: dict[str, str], asset: Path, *, bytecode: bool) -> dict[str, str]:
    """Import only from the bundle, as /var/task; without bytecode, write none either (read-only)."""
    env = dict(env, PYTHONPATH=str(asset), PYTHONNOUSERSITE="1")
    if not bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(python: str, code: str, env: dict[str, str]) -> dict:
    done = subprocess.run([python, "-s", "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def top_imports(python: str, env: dict[str, str], limit: int = 12) -> list[dict]:
    """The heaviest imports of the worker (cumulative, from -X importtime), for the tuning notes."""
    done = subprocess.run([python, "-s", "-X", "importtime", "-c", WORKER], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        try:
            self_us, cumulative_us, name = line[len("import time:"):].split("|")
            rows.append({"module": name.strip(), "self_ms": int(self_us) / 1000,
                         "cumulative_ms": int(cumulative_us) / 1000,
                         "depth": (len(name) - len(name.lstrip()) - 1) // 2})
        except ValueError:
            continue
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return [r for r in rows if r["depth"] <= 2][:limit]


def main(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="img2img-cold-start-") as tmp:
        asset, bare, python, built = built_asset(Path(tmp))
        return measure(python, sandbox_environment(), asset, bare, built, quick)


def measure(python: str, sandbox: dict[str, str], asset: Path, bare: Path, built: dict, quick: bool) -> dict:
    env = on_asset(sandbox, asset, bytecode=True)
    bare_env = on_asset(sandbox, bare, bytecode=False)
    reps = 5 if quick else 15
    _run(python, FLOOR, env)  # page cache warm for all (the first run of all reads files from disk)
    _run(python, WORKER, env)
    _run(python, WORKER, bare_env)
    # Powertools traces only inside Lambda (LAMBDA_TASK_ROOT set) unless told not to.
    traced_env = dict(env, POWERTOOLS_TRACE_DISABLED="false", LAMBDA_TASK_ROOT=env.get("LAMBDA_TASK_ROOT", "/var/task"))
    worker, traced, floor, no_bytecode = [], [], [], []
    for _ in range(reps):  # interleaved, so machine noise hits all alike
        worker.append(_run(python, WORKER, env))
        traced.append(_run(python, WORKER, traced_env))
        floor.append(_run(python, FLOOR, env))
        no_bytecode.append(_run(python, WORKER, bare_env))
    w = {k: median([r[k] for r in worker]) for k in worker[0]}
    t = {k: median([r[k] for r in traced]) for k in traced[0]}
    f = {k: median([r[k] for r in floor]) for k in floor[0]}
    n = {k: median([r[k] for r in no_bytecode]) for k in no_bytecode[0]}
    ratio = w["total_ms"] / f["total_ms"]
    traced_ratio = t["total_ms"] / f["total_ms"]
    cpu_ratio = w["cpu_ms"] / f["cpu_ms"]
    print(f"bundle: {built['architecture']}, Python {built['python_version']} ({built['interpreter']}), "
          f"{built['pyc_files']} .pyc files, {built['asset_mb']} MB unzipped")
    print(table(["what", "median ms", "import ms", "get_pipeline ms", "clients ms", "CPU ms", "modules"], [
        ("worker: import handler + get_pipeline() + 4 clients", w["total_ms"], w["import_ms"], w["pipeline_ms"],
         w["clients_ms"], w["cpu_ms"], int(w["modules"])),
        ("worker, tracing on (as deployed)", t["total_ms"], t["import_ms"], t["pipeline_ms"], t["clients_ms"],
         t["cpu_ms"], int(t["modules"])),
        ("worker, bundle without bytecode (read-only)", n["total_ms"], n["import_ms"], n["pipeline_ms"],
         n["clients_ms"], n["cpu_ms"], int(n["modules"])),
        ("floor: import boto3 + PIL.Image + 1 client", f["total_ms"], "", "", "", f["cpu_ms"], int(f["modules"])),
    ]))
    print(f"\nworker / floor = {ratio:.2f} (target <= {TARGET}: {verdict(ratio <= TARGET)}); with tracing on "
          f"{traced_ratio:.2f} ({verdict(traced_ratio <= TARGET)}); CPU time {cpu_ratio:.2f}; bytecode saves "
          f"{n['total_ms'] - w['total_ms']:.0f} ms; {reps} runs each")
    heavy = top_imports(python, env)
    print(table(["heaviest imports (worker)", "cumulative ms", "self ms"],
                [(("  " * r["depth"]) + r["module"], r["cumulative_ms"], r["self_ms"]) for r in heavy]))
    payload = {"quick": quick, "repetitions": reps, "bundle": built, "worker": {"median": w, "runs": worker},
               "worker_traced": {"median": t, "runs": traced},
               "worker_without_bytecode": {"median": n, "runs": no_bytecode},
               "floor": {"median": f, "runs": floor}, "heaviest_imports": heavy,
               "environment": sorted(k for k in env if k != "PATH"),
               "cpu_worker_over_floor": round(cpu_ratio, 3),
               "targets": {"worker_over_floor": {"value": round(ratio, 3), "target": f"<= {TARGET}",
                                                 "holds": ratio <= TARGET},
                           "worker_traced_over_floor": {"value": round(traced_ratio, 3), "target": f"<= {TARGET}",
                                                        "holds": traced_ratio <= TARGET}}}
    write_results("cold_start", payload)
    return payload


if __name__ == "__main__":
    run_as_script(main, __doc__)
