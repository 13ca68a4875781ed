"""One job end to end: resolve parameters, run once per (image, sidecar, parameters) version, record.

Pure orchestration over ports (core/ports.py): no boto3 here. Every image that is resolved ends as
exactly one record: a success with its output image, or a failure with a stable error code.
Transient faults raise (the queue retries); on the last attempt they become `retries_exhausted`.

The sidecar rule (docs/parameters.md): an image runs as soon as a prompt is known from any source.
An image without a prompt and without a sidecar waits: a delayed check message comes back after the
grace period and fails the job with `missing_parameters` if no prompt has arrived by then. A sidecar's
own upload runs its image (if the image is there yet). Both paths compute the same idempotency key
from the versions they saw, so the image is generated once; a new sidecar version generates again.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from ..models.base import JobParams, ModelAdapter, adapter_for, base_model_id
from ..settings import Settings
from . import images, keys, params as P, records
from .errors import JobError, transient
from .ports import EventPublisher, Guard, ModelInvoker, ObjectInfo, ObjectStore, RunEveryTime, Scheduler
from .triggers import SIDECAR_CHECK, Trigger

SUCCEEDED_EVENT = "ImageGenerationSucceeded"
DEADLINE_MARGIN_SECONDS = 15  # storing the outputs after the call
FAILED_EVENT = "ImageGenerationFailed"


class Resolution(Enum):
    """What resolving a job found: run it, record its permanent failure, or leave it for now."""

    READY = "ready"            # parameters valid: run the model
    FAILED = "failed"          # `job.error` is the permanent outcome to record
    WAITING = "waiting"        # no prompt yet: a delayed sidecar check was scheduled
    SUPERSEDED = "superseded"  # a newer version of the object has its own event

    @property
    def runs(self) -> bool:
        """Does this job end in a record now (a success or a failure)?"""
        return self in (Resolution.READY, Resolution.FAILED)


@dataclass
class Job:
    """A resolved job: the exact versions it saw, its merged parameters, or why it cannot run."""

    trigger: Trigger
    label: str
    source: ObjectInfo | None = None
    sidecar: ObjectInfo | None = None
    merged: P.MergedParams | None = None
    params: JobParams | None = None
    adapter: ModelAdapter | None = None
    error: JobError | None = None
    ignored_metadata: list[str] = field(default_factory=list)

    @property
    def idempotency_key(self) -> dict[str, Any]:
        return {
            "bucket": self.trigger.bucket,
            "key": self.trigger.key,
            "version": self.source.version if self.source else self.trigger.version_id,
            "sidecar": self.sidecar.version if self.sidecar else None,
            "params": self.merged.fingerprint() if self.merged else None,
            "error": self.error.code if self.error else None,
            "job_id": self.trigger.job_id,
            "output": self.trigger.output,
        }

    @property
    def job_id(self) -> str:
        if self.trigger.job_id:
            return self.trigger.job_id
        blob = json.dumps(self.idempotency_key, sort_keys=True, default=str).encode()
        return "j-" + hashlib.sha256(blob).hexdigest()[:24]

    def source_ref(self) -> dict[str, Any]:
        if self.source:
            return self.source.ref()
        return {"bucket": self.trigger.bucket, "key": self.trigger.key,
                "version_id": self.trigger.version_id, "etag": self.trigger.etag}


class Pipeline:
    def __init__(self, settings: Settings, store: ObjectStore, model: ModelInvoker,
                 events: EventPublisher | None = None, scheduler: Scheduler | None = None,
                 guard: Guard | None = None, clock: Callable[[], float] = time.time,
                 log: Callable[..., None] | None = None, on_job: Callable[[str], None] | None = None):
        self.settings = settings
        self.store = store
        self.model = model
        self.events = events
        self.scheduler = scheduler
        self.guard = guard or RunEveryTime()
        self.clock = clock
        self.log = log or (lambda message, **fields: None)
        self.on_job = on_job or (lambda job_id: None)  # e.g. make the job id the logs' correlation id
        # Seconds left in the current invocation (set per invocation by the handler; None: no limit).
        self.time_left: Callable[[], float] | None = None

    # ---- routing -------------------------------------------------------------------------------
    def handle(self, trigger: Trigger, attempt: int = 1, last_attempt: bool = False) -> list[dict[str, Any]]:
        """Records written for this trigger (none when it is skipped, deferred or superseded)."""
        if self._ignored(trigger):
            return []
        if trigger.kind == "object" and keys.is_json(trigger.key):
            if keys.is_folder_defaults(trigger.key):
                self.log("folder defaults changed; they apply to uploads from now on", key=trigger.key)
                return []
            return [record for image_key in self._images_for_sidecar(trigger)
                    for record in self._run(Trigger("object", trigger.bucket, image_key, origin=trigger.origin),
                                            "sidecar", attempt, last_attempt)]
        if trigger.kind == "object" and not keys.is_image(trigger.key):
            self.log("not an image suffix; skipped", key=trigger.key)
            return []
        label = {"object": "upload", "check": "sidecar-wait"}.get(trigger.kind, trigger.origin)
        return self._run(trigger, label, attempt, last_attempt)

    def _ignored(self, trigger: Trigger) -> bool:
        s = self.settings
        if trigger.kind == "job":
            return False  # explicit requests name their source on purpose
        reason = ""
        if trigger.bucket == s.output_bucket and (not s.output_prefix or trigger.key.startswith(s.output_prefix)):
            reason = "object is in the output location (no recursion)"
        elif any(trigger.key.startswith(p) for p in s.excluded_prefixes):
            reason = "key is under an excluded prefix"
        elif s.input_bucket and trigger.bucket != s.input_bucket:
            reason = "bucket is not this pipeline's input bucket"
        if reason:
            self.log(f"ignored: {reason}", bucket=trigger.bucket, key=trigger.key)
        return bool(reason)

    def _images_for_sidecar(self, trigger: Trigger) -> list[str]:
        exact = keys.image_for_exact_sidecar(trigger.key)
        if exact:
            return [exact] if self.store.head(trigger.bucket, exact) else []
        stem = keys.stem_of_sidecar(trigger.key)
        return [k for k in self.store.list_keys(trigger.bucket, stem + ".")
                if keys.is_image(k) and "/" not in k[len(stem) + 1:] and "." not in k[len(stem) + 1:]]

    def _run(self, trigger: Trigger, label: str, attempt: int, last_attempt: bool) -> list[dict[str, Any]]:
        job = Job(trigger, label)
        try:
            if not self.resolve(job).runs:
                return []
            self.on_job(job.job_id)
            ran = []
            record = self.guard.once(job.idempotency_key, lambda: ran.append(1) or self._execute(job, attempt))
            if record is None:  # superseded while it ran
                return []
            # A replayed record (idempotency hit) is the earlier outcome: the caller must not count it again.
            return [record if ran else {**record, "replayed": True}]
        except JobError as exc:
            if exc.retryable and last_attempt:
                self._exhausted(job, exc, attempt)
            raise
        except Exception as exc:  # a bug or an unforeseen fault: retried, and never lost silently
            if last_attempt:
                self._exhausted(job, transient("internal_error", f"{type(exc).__name__}: {exc}"), attempt)
            raise

    # ---- resolving -----------------------------------------------------------------------------
    def resolve(self, job: Job) -> Resolution:
        """Fill `job` with what it saw and its parameters, or the permanent error that ends it.

        Callers that accept jobs (the API) use it to refuse bad ones early and to learn the idempotency key."""
        t = job.trigger
        current = self.store.head(t.bucket, t.key)
        if current is None:
            job.error = JobError("source_not_found", f"s3://{t.bucket}/{t.key} does not exist (deleted, or "
                                 "not readable by the worker)")
            return Resolution.FAILED
        if _superseded(t, current):
            self.log("superseded by a newer version of the object; that version's event decides",
                     key=t.key, event_version=t.version_id or t.etag, current=current.version)
            return Resolution.SUPERSEDED
        job.source = current
        if current.size > self.settings.max_input_bytes:
            job.error = JobError("image_too_large", f"the input is {current.size:,} bytes; this deployment "
                                 f"accepts at most {self.settings.max_input_bytes:,} bytes (IMG2IMG_MAX_INPUT_BYTES)")
            return Resolution.FAILED
        try:
            layers = self._layers(job)
        except JobError as exc:
            job.error = exc
            return Resolution.FAILED
        job.merged = P.merge(layers)
        if not job.merged.has_prompt:
            if self._wait_for_sidecar(job):
                return Resolution.WAITING
            waited = f" (waited {self.settings.sidecar_grace_seconds} s for a sidecar)" if t.kind == "check" else ""
            candidates = " or ".join(keys.sidecar_candidates(t.key))
            job.error = JobError("missing_parameters", f"no prompt from any source{waited}: set metadata "
                                 f"x-amz-meta-prompt, upload a sidecar {candidates}, or add prompt to a folder "
                                 f"{keys.DEFAULTS_NAME}")
            return Resolution.FAILED
        try:
            job.params, job.adapter = self.validate(job.merged)
        except JobError as exc:
            job.error = exc
            return Resolution.FAILED
        return Resolution.READY

    def _layers(self, job: Job) -> list[P.Layer]:
        t, s = job.trigger, self.settings
        layers = [P.deployment_layer(s.model_id, s.output_format, s.default_prompt, s.default_params)]
        for defaults_key in keys.defaults_chain(t.key):
            found = self.store.get(t.bucket, defaults_key)
            if found:
                uri = f"s3://{t.bucket}/{defaults_key}"
                layers.append(P.folder_defaults_layer(P.parse_json_document(found[0], f"folder defaults {uri}"), uri))
        metadata_layers, job.ignored_metadata = P.metadata_layers(job.source.metadata)
        layers.extend(metadata_layers)
        for sidecar_key in keys.sidecar_candidates(t.key):
            found = self.store.get(t.bucket, sidecar_key)
            if found:
                data, job.sidecar = found
                uri = f"s3://{t.bucket}/{sidecar_key}"
                layers.append(P.sidecar_layer(P.parse_json_document(data, f"sidecar {uri}"), uri))
                break
        if t.params is not None:
            layers.append(P.request_layer(t.params, f"{t.origin} request"))
        return layers

    def _wait_for_sidecar(self, job: Job) -> bool:
        t, s = job.trigger, self.settings
        if t.kind != "object" or job.sidecar or not self.scheduler or s.sidecar_grace_seconds <= 0:
            return False
        age = self.clock() - job.source.last_modified.timestamp()
        remaining = s.sidecar_grace_seconds - age
        if remaining <= 0:
            return False
        message = {"type": SIDECAR_CHECK, "bucket": t.bucket, "key": t.key,
                   "version_id": job.source.version_id, "etag": job.source.etag}
        self.scheduler.defer(message, max(1, min(900, int(remaining + 0.999))))
        self.log("no prompt yet: waiting for a sidecar", key=t.key, seconds=int(remaining + 0.999))
        return True

    def validate(self, merged: P.MergedParams) -> tuple[JobParams, ModelAdapter]:
        """The model these parameters select (if this deployment allows it), and its validation."""
        model_id = str(merged.values.get("model_id") or self.settings.model_id)
        allowed = self.settings.allowed_model_ids
        if allowed and model_id not in allowed and base_model_id(model_id) not in allowed:
            raise P.invalid([{"field": "model_id", "source": merged.origin("model_id"), "value": model_id,
                              "message": "is not enabled in this deployment", "allowed": ", ".join(allowed)}])
        adapter = adapter_for(model_id)
        return adapter.validate(model_id, merged), adapter

    # ---- running -------------------------------------------------------------------------------
    def _execute(self, job: Job, attempt: int) -> dict[str, Any] | None:
        """Runs under the idempotency guard: generate and store, or record a permanent failure.

        None when the input changed while the job ran: the newer version's job writes the outcome, so
        a slow old job can never overwrite a newer result."""
        started = time.perf_counter()
        timings: dict[str, int] = {}
        prefix = self._output_prefix(job)
        image = None
        try:
            if job.error:
                raise job.error
            record, image = self._generate(job, attempt, prefix, timings)
        except JobError as exc:
            if exc.retryable:
                raise
            timings["total"] = _ms(started)
            record = records.failure_record(self._common(job, "failed", attempt), exc.as_record(), timings)
        if self._changed_since_resolved(job):
            self.log("superseded while running: a newer image or sidecar version decides", key=job.trigger.key)
            return None
        t0 = time.perf_counter()
        if image is not None:
            self.store.put(self.settings.output_bucket, *image)
            timings["store"] = _ms(t0)
        timings["total"] = _ms(started)
        self._store_record(job, record, prefix)
        return record

    def _changed_since_resolved(self, job: Job) -> bool:
        """Has the image, or which sidecar applies, changed since this job resolved its parameters?"""
        t = job.trigger
        if job.source is None or t.kind == "job":
            return False  # explicit requests are about the version they named
        current = self.store.head(t.bucket, t.key)
        if current is None or current.version != job.source.version:
            return True
        heads = (self.store.head(t.bucket, k) for k in keys.sidecar_candidates(t.key))
        applies = next((info for info in heads if info is not None), None)
        now = (applies.key, applies.version) if applies else None
        return now != ((job.sidecar.key, job.sidecar.version) if job.sidecar else None)

    def _generate(self, job: Job, attempt: int, prefix: str, timings: dict[str, int]):
        """(success record, (key, bytes, content type, metadata) of the image to store)."""
        params, adapter, source = job.params, job.adapter, job.source
        assert params and adapter and source
        t0 = time.perf_counter()
        found = self.store.get(source.bucket, source.key, source.version_id)
        if found is None:
            raise JobError("source_not_found", f"s3://{source.bucket}/{source.key} was deleted before it was read")
        data = found[0]
        timings["download"] = _ms(t0)
        t0 = time.perf_counter()
        prepared = images.prepare(data, adapter.target_size, params.fit, self.settings.max_input_pixels)
        body = adapter.build_body(params, prepared.base64)
        timings["prepare"] = _ms(t0)
        self._check_time_for_a_model_call()
        t0 = time.perf_counter()
        result = adapter.parse_response(self.model.invoke(params.model_id, body))
        timings["model"] = _ms(t0)
        t0 = time.perf_counter()
        output = images.finish_output(result.images[0], prepared, params.output_format, params.restore_aspect)
        image_key, _ = records.output_keys(prefix, source.key, output.format)
        seed = result.seeds[0] if result.seeds else params.seed
        metadata = {
            "source-bucket": source.bucket,
            "source-key": records.metadata_value(source.key),
            "source-version": source.version_id or "",
            "source-etag": source.etag.strip('"'),
            "model-id": params.model_id,
            "seed": str(seed),
            "job-id": job.job_id,
        }
        image = (image_key, output.data, output.content_type, {k: v for k, v in metadata.items() if v})
        timings["finish"] = _ms(t0)
        record = records.success_record(
            self._common(job, "succeeded", attempt),
            request=params.request, seeds=result.seeds or [seed],
            outputs=[{"bucket": self.settings.output_bucket, "key": image_key, "content_type": output.content_type,
                      "width": output.width, "height": output.height, "bytes": len(output.data), "seed": seed}],
            input_info={"width": prepared.source.width, "height": prepared.source.height,
                        "format": prepared.source.format, "mode": prepared.source.mode,
                        "frames": prepared.source.frames, "exif_orientation": prepared.source.orientation,
                        "bytes": prepared.source.bytes},
            prepared={"width": prepared.width, "height": prepared.height, "fit": prepared.fit,
                      "restore_aspect": params.restore_aspect},
            dropped=params.dropped, timings_ms=timings)
        return record, image

    def _check_time_for_a_model_call(self) -> None:
        """Do not start a Bedrock call the function's timeout would cut off: a later delivery runs it."""
        if self.time_left is None:
            return
        left, needed = self.time_left(), self.settings.bedrock_read_timeout + DEADLINE_MARGIN_SECONDS
        if left < needed:
            raise transient("deadline", f"{left:.0f} s left in this invocation, less than the {needed} s a "
                            "Bedrock call may take; a later delivery runs the job")

    def _common(self, job: Job, status: str, attempt: int) -> dict[str, Any]:
        sidecar = job.sidecar.ref() if job.sidecar else None
        params = job.params.effective if job.params else job.merged.canonical() if job.merged else {}
        model_id = job.params.model_id if job.params else params.get("model_id")
        record = records.base_record(status, job.job_id, job.source_ref(), sidecar=sidecar, model_id=model_id,
                                     params=params, sources=job.merged.origins if job.merged else {},
                                     attempt=attempt, trigger=job.label)
        if job.ignored_metadata:
            record["ignored_metadata"] = job.ignored_metadata
        return record

    def _output_prefix(self, job: Job) -> str:
        output = job.trigger.output or {}
        return str(output.get("prefix", self.settings.output_prefix))

    def _store_record(self, job: Job, record: dict[str, Any], prefix: str) -> None:
        key = records.record_key(prefix, job.trigger.key)
        record["record"] = {"bucket": self.settings.output_bucket, "key": key}
        body = json.dumps(record, ensure_ascii=False, indent=2).encode("utf-8")
        self.store.put(self.settings.output_bucket, key, body, "application/json",
                       {"status": record["status"], "job-id": job.job_id})
        if self.events:
            self.events.publish(SUCCEEDED_EVENT if record["status"] == "succeeded" else FAILED_EVENT,
                                event_detail(record))

    def _exhausted(self, job: Job, cause: JobError, attempt: int) -> None:
        """The last attempt of a transient fault: leave a failure record before the message goes to the DLQ."""
        error = JobError("retries_exhausted", f"gave up after {attempt} attempts: {cause.message}",
                         details={"cause": cause.code})
        record = records.failure_record(self._common(job, "failed", attempt), error.as_record())
        self._store_record(job, record, self._output_prefix(job))


def event_detail(record: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge detail for an outcome (schema in docs/events/)."""
    error = record.get("error") or {}
    return {
        "job_id": record["job_id"],
        "status": record["status"],
        "source": record["source"],
        "record": record.get("record"),
        "outputs": [{"bucket": o["bucket"], "key": o["key"]} for o in record.get("outputs", [])],
        "model_id": record.get("model_id"),
        "seed": (record.get("seeds") or [None])[0],
        "error_code": error.get("code"),
    }


def _superseded(trigger: Trigger, current: ObjectInfo) -> bool:
    if trigger.version_id and current.version_id:
        return trigger.version_id != current.version_id
    if trigger.etag and current.etag:
        return trigger.etag.strip('"') != current.etag.strip('"')
    return False


def _ms(since: float) -> int:
    return int((time.perf_counter() - since) * 1000)
