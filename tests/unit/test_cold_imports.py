"""What a worker's cold start loads. Every module imported at init is paid by every cold start (the
bench: bench/cold_start.py, docs/performance.md §2), so what only some jobs need waits for them: checked
in a fresh interpreter, on the mechanism (which modules and clients exist), never on time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LAMBDA_SRC = Path(__file__).resolve().parents[2] / "lambda_src"

# Needed by some jobs only: signing (C2PA, KMS/SSM), bulk rows, quota tables, tracing turned on. (Powertools
# idempotency and boto3 come with the pipeline, which the first invocation builds, never with the import.)
ONLY_SOME_JOBS = ("c2pa", "cryptography", "aws_xray_sdk.core", "img2img.aws.signing_keys", "img2img.aws.kms_signer",
                  "img2img.aws.bulk", "img2img.core.bulk", "img2img.aws.quota")
NOT_AT_IMPORT = (*ONLY_SOME_JOBS, "boto3", "aws_lambda_powertools.utilities.idempotency", "img2img.aws.translator",
                 "img2img.aws.idempotency", "pydantic")

# A worker like the local stack's: an idempotency table, a job queue, an event bus, a translation model,
# no signing key and no quota table (infra/config.py defaults).
WORKER_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "IMG2IMG_INPUT_BUCKET": "in", "IMG2IMG_OUTPUT_BUCKET": "out", "IMG2IMG_IDEMPOTENCY_TABLE": "table",
    "IMG2IMG_JOB_QUEUE_URL": "http://127.0.0.1:9/123456789012/jobs", "IMG2IMG_EVENT_BUS_NAME": "bus",
    "IMG2IMG_TRANSLATION_MODEL_ID": "us.amazon.nova-2-lite-v1:0", "POWERTOOLS_TRACE_DISABLED": "true",
}


def loaded_after(code: str) -> dict:
    """Run `code` in a fresh interpreter of the worker's environment: the modules loaded, and how many
    boto3 clients aws/clients.py built."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([str(LAMBDA_SRC), *sys.path]),
           **WORKER_ENV}
    report = ("import json, sys\nfrom img2img.aws import clients\n"
              "print(json.dumps({'modules': sorted(sys.modules), 'clients': clients.client.cache_info().currsize}))")
    done = subprocess.run([sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def heavy(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_importing_the_worker_handler_loads_nothing_that_only_jobs_need():
    loaded = loaded_after("import img2img.handlers.sqs_worker")
    assert heavy(loaded["modules"], NOT_AT_IMPORT) == []
    assert loaded["clients"] == 0


def test_the_first_pipeline_builds_only_the_idempotency_client_and_loads_nothing_for_some_jobs_only():
    """The S3, Bedrock, EventBridge, SQS and translation clients come with the first call that uses them."""
    loaded = loaded_after("import img2img.handlers.sqs_worker\nfrom img2img.assembly import get_pipeline\n"
                          "get_pipeline()")
    assert heavy(loaded["modules"], ONLY_SOME_JOBS) == []
    assert "aws_lambda_powertools.utilities.idempotency" in loaded["modules"]  # every job of this worker
    assert loaded["clients"] == 1
