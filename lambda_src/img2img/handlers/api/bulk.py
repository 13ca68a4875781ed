"""POST /v1/bulk-jobs and GET /v1/bulk-jobs/{bulk_id}: bulk jobs (docs/bulk.md) through the API.

A thin Router over img2img/bulk_submit.py, the path `img2img bulk submit` and the `SubmitBulkJob` event
take too: the manifest is named by its S3 location, the outputs go under the API prefix, the cost
ceiling is lifted only by `acknowledgeCost`. Status is one GetItem on the bulk job's progress item.
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from pydantic import BaseModel, ConfigDict, Field

from ... import bulk_submit
from ...settings import get_settings
from . import service
from .routes import _call
from .schemas import IDEMPOTENCY_KEY, JOB_ID, error_responses

S3_OBJECT = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$"
router = Router()
# POST: any refusal of a bulk job (the manifest, the parameters as every job's, the cost), any transient cause.
ERRORS = error_responses(without=("job_not_found", "bulk_job_not_found", "source_not_found"))
STATUS_ERRORS = {status: error_responses(without=("job_not_found", "source_not_found"))[status]
                 for status in (404, 422, 503)}


class BulkJobRequest(BaseModel):
    """A manifest (CSV `bucket,key[,version]`, keys URL-encoded, or `*.jsonl` with per-row params) in a
    bucket this deployment may read, and the parameters every row runs with."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    manifest: str = Field(pattern=S3_OBJECT, description="s3://bucket/key of the manifest (docs/bulk.md)")
    params: dict[str, Any] = Field(default_factory=dict, description="job parameters (docs/parameters.md)")
    operation: str | None = Field(None, max_length=64, examples=["remove-background"],
                                  description="what to do (docs/operations.md); params.operation works too")
    output_prefix: str = Field(min_length=1, max_length=256, examples=["shop/"], description=(
        "where the outputs and records go, under the API prefix: <outputPrefix>api/<output_prefix><key>.*"))
    acknowledge_cost: bool = Field(False, alias="acknowledgeCost", description=(
        "run even when the estimated model cost is above the ceiling (else 422 cost_not_acknowledged)"))


class BulkJobAccepted(BaseModel):
    bulk_id: str
    status: Literal["submitted"]
    rows: int
    operation: str
    estimated_cost_usd: float
    output: dict[str, str] = Field(description="{bucket, prefix}: where the outputs and records go")
    batch_job_id: str = Field(description="the S3 Batch Operations job")
    status_url: str


class BulkJobStatus(BaseModel):
    bulk_id: str
    status: Literal["running", "finished"]
    rows: int
    done: int = Field(description="rows with their record (or refused for good by the enqueue function)")
    counts: dict[str, int] = Field(description="rows per status: succeeded, failed, rejected")
    errors: dict[str, int] = Field(description="rows per error code (docs/errors.md)")
    rate_per_minute: float = Field(description="rows done per minute since submit")
    eta_seconds: int | None = Field(description=(
        "seconds until every row is done, at the model's configured quota (modelQuotas) if it has one, "
        "else at the observed rate; null before there is a rate"))
    operation: str | None = None
    output_prefix: str | None = None
    estimated_cost_usd: float | None = None
    created_at: str
    report: dict[str, str] | None = Field(None, description="{bucket, prefix} of the completion report, once done")


def status_url(bulk_id: str) -> str:
    return f"/v1/bulk-jobs/{bulk_id}"


@lru_cache(maxsize=1)
def target() -> bulk_submit.Target:
    """This deployment's bulk target: S3 Batch Operations with the stack's enqueue function and role."""
    return bulk_submit.aws_target(get_settings())


def _refused(exc: bulk_submit.BulkRefused) -> service.ApiError:
    return service.ApiError(exc.code, exc.message)


def create(body: BulkJobRequest) -> dict[str, Any]:
    s = get_settings()
    try:
        done = bulk_submit.submit_request(
            target(), body.manifest, dict(body.params), body.output_prefix, namespace=s.api_prefix,
            acknowledge_cost=body.acknowledge_cost, operation=body.operation, source={"route": "POST /v1/bulk-jobs"})
    except bulk_submit.BulkRefused as exc:
        raise _refused(exc) from None
    answer = {"bulk_id": done.bulk_id, "status": "submitted", "rows": done.rows, "operation": done.operation,
              "estimated_cost_usd": done.estimated_cost_usd,
              "output": {"bucket": done.output_bucket, "prefix": done.output_prefix},
              "batch_job_id": done.batch_job_id, "status_url": status_url(done.bulk_id)}
    return {"status": 202, "body": answer, "headers": {"Location": status_url(done.bulk_id)}}


def progress(bulk_id: str) -> dict[str, Any]:
    found = target().progress.get(bulk_id)
    if found is None:
        raise service.ApiError("bulk_job_not_found", f"no bulk job {bulk_id} (unknown, or older than 90 days)")
    return bulk_submit.status(found, get_settings(), time.time())


@router.post("/v1/bulk-jobs", summary="Submit a bulk job: one set of parameters over a manifest's objects",
             operation_id="createBulkJob",
             responses={202: {"description": "submitted: S3 Batch Operations runs it; poll status_url",
                              "content": {"application/json": {"model": BulkJobAccepted}}}, **ERRORS})
def create_bulk_job(body: Annotated[BulkJobRequest, Body()], idempotency_key: IDEMPOTENCY_KEY = None):
    call = _call(router)
    return service.render(call, service.once(call, idempotency_key, lambda: create(body)))


@router.get("/v1/bulk-jobs/<bulk_id>", summary="A bulk job's progress: counts, rate, ETA, report",
            operation_id="getBulkJob",
            responses={200: {"description": "the bulk job", "content": {"application/json": {"model": BulkJobStatus}}},
                       **STATUS_ERRORS})
def get_bulk_job(bulk_id: Annotated[str, Path(pattern=JOB_ID)]) -> BulkJobStatus:
    return BulkJobStatus(**progress(bulk_id))
