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

import base64
import hashlib
import json
import math
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from ..limits import FOLDER_DEFAULTS_CACHE_SECONDS
from ..operations import (
    ALPHA_MASK,
    BY_MODEL,
    BY_NAME,
    COMPANIONS,
    IMAGE_TO_IMAGE,
    NAMES,
    Companion,
    normal_name,
    source_type_of,
)
from ..settings import Settings
from . import c2pa_manifest, images, keys, masks, records, translation, xmp
from . import params as P
from .errors import JobError, internal_error, transient
from .formats import CONTENT_TYPES
from .model_api import (
    MAX_REQUEST_BYTES,
    GenerationResult,
    JobParams,
    ModelAdapter,
    base_model_id,
    parse_model_ref,
    split_profile,
)
from .ports import (
    BulkProgress,
    EventPublisher,
    Guard,
    ModelInvoker,
    ObjectInfo,
    ObjectStore,
    QuotaLimiter,
    RunEveryTime,
    Scheduler,
    SigningKeys,
)
from .quota import within_quota
from .triggers import SIDECAR_CHECK, Trigger

SUCCEEDED_EVENT = "ImageGenerationSucceeded"
DEADLINE_MARGIN_SECONDS = 15  # storing the outputs after the call
FAILED_EVENT = "ImageGenerationFailed"
# model id (and where it came from) -> its adapter: models/registry.adapter_for, given by assembly.py.
Registry = Callable[[str, str], ModelAdapter]


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


SIBLINGS_LIMIT = 50  # keys per sibling listing; a fuller listing is trusted only below its last key


@dataclass(frozen=True)
class Listing:
    """One LIST under `prefix`: which keys exist, and where that answer is complete. S3 lists in key
    order (strongly consistent), so a listing cut off at `limit` keys still proves absence below its
    last key."""

    prefix: str
    keys: tuple[str, ...]
    limit: int

    @property
    def complete(self) -> bool:
        return len(self.keys) < self.limit

    def has(self, key: str) -> bool | None:
        """True / False when the listing knows, None when it cannot tell (read the key itself)."""
        if key in self.keys:
            return True
        if not key.startswith(self.prefix):
            return None
        if self.complete or (self.keys and key.encode("utf-8", "surrogatepass") <
                             self.keys[-1].encode("utf-8", "surrogatepass")):
            return False
        return None

    def under(self, prefix: str) -> list[str] | None:
        """The listed keys under `prefix` (a narrower prefix than the listing's), None when not all are known."""
        if not (prefix.startswith(self.prefix) and self.complete):
            return None
        return [k for k in self.keys if k.startswith(prefix)]


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
    # The companion images (mask, style image) this job read, by companion name (operations.py).
    companions: dict[str, ObjectInfo] = field(default_factory=dict)
    recorded: bool = False  # its one record is written: no other path may write another
    layers_read: bool = False  # every parameter source (sidecar included) was read
    companions_read: bool = False  # every companion was looked up (found, or known to be absent)
    siblings: Listing | None = None  # the keys beside the image when its parameters were resolved

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
            # Only jobs with companions carry the field: other jobs keep the keys they always had.
            **({"companions": {name: [info.key, info.version] for name, info in sorted(self.companions.items())}}
               if self.companions else {}),
        }

    @property
    def run_id(self) -> str:
        """Names this exact run (what it saw and was asked): the key of its model checkpoint."""
        blob = json.dumps(records.safe(self.idempotency_key), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    @property
    def job_id(self) -> str:
        if self.trigger.job_id and self.trigger.error is None:
            return self.trigger.job_id
        return "j-" + self.run_id[:24]

    def source_ref(self) -> dict[str, Any]:
        if self.source:
            return self.source.ref()
        return {"bucket": self.trigger.bucket, "key": self.trigger.key,
                "version_id": self.trigger.version_id, "etag": self.trigger.etag}


class Pipeline:
    def __init__(self, settings: Settings, store: ObjectStore, model: ModelInvoker, *, registry: Registry,
                 events: EventPublisher | None = None, scheduler: Scheduler | None = None,
                 guard: Guard | None = None, clock: Callable[[], float] = time.time,
                 log: Callable[..., None] | None = None, on_job: Callable[[str], None] | None = None,
                 log_exception: Callable[..., None] | None = None, signing: SigningKeys | None = None,
                 translator: translation.Translator | None = None, progress: BulkProgress | None = None,
                 quota: QuotaLimiter | None = None):
        self.settings = settings
        self.progress = progress  # bulk jobs' counters (None: rows are recorded, not counted)
        self.store = store
        self.model = model
        self.registry = registry
        self.signing = signing  # C2PA signing (None: outputs carry the XMP marking only)
        self.translator = translator  # prompts not in English translated first (None: sent as written)
        self.quota = quota  # per-model request budgets shared across sandboxes (None: no limiter)
        self.events = events
        self.scheduler = scheduler
        self.guard = guard or RunEveryTime()
        self.clock = clock
        self.log = log or (lambda message, **fields: None)
        self.log_exception = log_exception or self.log  # a defect: logged with its traceback
        self.on_job = on_job or (lambda job_id: None)  # e.g. make the job id the logs' correlation id
        # Seconds left in the current invocation (set per invocation by the handler; None: no limit).
        self.time_left: Callable[[], float] | None = None
        # This deployment's AWS account (from the invocation's ARN): model ARNs must be of it.
        self.account_id: str | None = None
        # Reads self.clock at each call: tests and the API swap the pipeline's clock after construction.
        self.folder_defaults = P.FolderDefaultsCache(FOLDER_DEFAULTS_CACHE_SECONDS,
                                                     lambda: self.clock())  # noqa: PLW0108

    # ---- routing -------------------------------------------------------------------------------
    def handle(self, trigger: Trigger, attempt: int = 1, last_attempt: bool = False) -> list[dict[str, Any]]:
        """Records written for this trigger (none when it is skipped, deferred or superseded)."""
        if trigger.kind == "bulk-report":
            return self._bulk_report(trigger.key)
        if self._ignored(trigger):
            return []
        if trigger.kind == "object" and keys.is_json(trigger.key):
            if keys.is_folder_defaults(trigger.key):
                self.folder_defaults.forget(trigger.bucket, trigger.key)
                self.log("folder defaults changed; they apply to uploads from now on", key=trigger.key,
                         other_sandboxes_within_seconds=FOLDER_DEFAULTS_CACHE_SECONDS)
                return []
            return [record for image_key in self._images_for_sidecar(trigger)
                    for record in self._run(Trigger("object", trigger.bucket, image_key, origin=trigger.origin),
                                            "sidecar", attempt, last_attempt)]
        if trigger.kind == "object" and keys.is_companion(trigger.key):
            owner, suffix = keys.owner_prefix(trigger.key)
            return [record for image_key in self._images_named(trigger.bucket, owner)
                    for record in self._run(Trigger("object", trigger.bucket, image_key, origin=trigger.origin),
                                            f"{suffix}-upload", attempt, last_attempt)]
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
        return self._images_named(trigger.bucket, exact or keys.stem_of_sidecar(trigger.key))

    def _images_named(self, bucket: str, name: str) -> list[str]:
        """The image `name` itself (`cat.jpg`), or the images of a stem (`cat` -> `cat.jpg`, `cat.png`):
        what a sidecar or companion upload belongs to."""
        if keys.is_image(name):
            return [name] if self.store.head(bucket, name) else []
        return [k for k in self.store.list_keys(bucket, name + ".")
                if keys.is_image(k) and "/" not in k[len(name) + 1:] and "." not in k[len(name) + 1:]]

    def _run(self, trigger: Trigger, label: str, attempt: int, last_attempt: bool) -> list[dict[str, Any]]:
        """The one place a job's exception paths end: each ends in exactly one record, or (transient,
        not the last attempt) raises so that the queue brings the job back."""
        job = Job(trigger, label)
        try:
            if not self.resolve(job).runs:
                return []
            self.on_job(job.job_id)
            ran = []
            record = self.guard.once(job.idempotency_key, lambda: ran.append(1) or self._execute(job, attempt))
            if record is None:  # superseded while it ran
                return []
            if not ran and job.trigger.bulk_id:  # a row replayed (re-submitted): counted once on this bulk job
                job.recorded = True
                self._count_bulk_row(job, record)
            # A replayed record (idempotency hit) is the earlier outcome: the caller must not count it again.
            return [record if ran else {**record, "replayed": True}]
        except JobError as exc:
            if not exc.retryable:  # a permanent fault outside _execute (e.g. the guard itself)
                return self._record_now(job, exc, attempt)
            if last_attempt:
                self._exhausted(job, exc, attempt)
            raise
        except Exception as exc:  # a defect: recorded at once, never retried (transient is a closed list)
            self.log_exception("internal error", job_id=job.job_id, key=trigger.key)
            return self._record_now(job, internal_error(exc, job.job_id), attempt)

    def _record_now(self, job: Job, error: JobError, attempt: int) -> list[dict[str, Any]]:
        """A permanent failure found outside the guarded run; nothing more if a record was written."""
        if job.recorded:
            return []
        record = records.failure_record(self._common(job, "failed", attempt), error.as_record())
        self._store_record(job, record, self._output_prefix(job))
        self._drop_checkpoint(job)
        return [record]

    # ---- resolving -----------------------------------------------------------------------------
    def resolve(self, job: Job) -> Resolution:
        """Fill `job` with what it saw and its parameters, or the permanent error that ends it.

        Callers that accept jobs (the API) use it to refuse bad ones early and to learn the idempotency key."""
        try:
            return self._resolve(job)
        except JobError as exc:
            if exc.retryable:
                raise
            job.error = exc
        except Exception as exc:  # a defect while resolving: recorded as such, never retried
            self.log_exception("internal error while resolving", key=job.trigger.key)
            job.error = internal_error(exc)
        return Resolution.FAILED

    def _resolve(self, job: Job) -> Resolution:
        t = job.trigger
        if t.error is not None:
            job.error = t.error
            return Resolution.FAILED
        current = self.store.head(t.bucket, t.key, t.version_id if t.kind == "job" else None)
        if current is None:
            version = f" version {t.version_id}" if t.kind == "job" and t.version_id else ""
            job.error = JobError("source_not_found", f"s3://{t.bucket}/{t.key}{version} does not exist (deleted, "
                                 "or not readable by the worker)")
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
        job.merged = P.merge(self._layers(job))
        operation, _ = self._operation(job.merged)
        if _needs_prompt(operation) and not job.merged.has_prompt:
            if not job.sidecar and self._wait(job, "a sidecar"):
                return Resolution.WAITING
            waited = f" (waited {self.settings.sidecar_grace_seconds} s for a sidecar)" if t.kind == "check" else ""
            candidates = " or ".join(keys.sidecar_candidates(t.key))
            job.error = P.missing_prompt(job.merged, f"no prompt from any source{waited}: set metadata "
                                         f"x-amz-meta-prompt, upload a sidecar {candidates}, or add prompt to a "
                                         f"folder {keys.DEFAULTS_NAME}")
            return Resolution.FAILED
        job.params, job.adapter = self.validate(job.merged)
        for companion in job.params.companions:
            if self._find_companion(job, companion) is Resolution.WAITING:
                return Resolution.WAITING
        job.companions_read = True
        self._check_output_keys(job)
        return Resolution.READY

    def _layers(self, job: Job) -> list[P.Layer]:
        t, s = job.trigger, self.settings
        layers = [P.deployment_layer(s.model_id, s.output_format, s.default_prompt, s.default_params)]
        for defaults_key, data, _info in self.folder_defaults.chain(t.bucket, keys.defaults_chain(t.key),
                                                                    self.store.get):
            uri = f"s3://{t.bucket}/{defaults_key}"
            layers.append(P.folder_defaults_layer(P.parse_json_document(data, f"folder defaults {uri}"), uri))
        metadata_layers, job.ignored_metadata = P.metadata_layers(job.source.metadata)
        layers.extend(metadata_layers)
        job.siblings = self._siblings(t.bucket, t.key)
        for sidecar_key in keys.sidecar_candidates(t.key):
            if job.siblings.has(sidecar_key) is False:
                continue  # the listing shows it absent: no GET needed to learn that
            found = self.store.get(t.bucket, sidecar_key)
            if found:
                data, job.sidecar = found
                uri = f"s3://{t.bucket}/{sidecar_key}"
                layers.append(P.sidecar_layer(P.parse_json_document(data, f"sidecar {uri}"), uri))
                break
        job.layers_read = True
        if t.params is not None:
            layers.append(P.request_layer(t.params, f"{t.origin} request"))
        return layers

    def _siblings(self, bucket: str, image_key: str) -> Listing:
        """One LIST of the keys beside the image that may be its sidecars or companions (`cat.` for
        `cat.png`): what would otherwise be one GET or LIST per candidate."""
        prefix = _siblings_prefix(image_key)
        return Listing(prefix, tuple(self.store.list_keys(bucket, prefix, limit=SIBLINGS_LIMIT)), SIBLINGS_LIMIT)

    def _wait(self, job: Job, what: str) -> bool:
        """An upload that lacks a sidecar or companion waits (once) for the grace period: True when a
        delayed check was scheduled. The check, or the late file's own upload, runs the job."""
        t, s = job.trigger, self.settings
        if t.kind != "object" or not self.scheduler or s.sidecar_grace_seconds <= 0:
            return False
        age = self.clock() - job.source.last_modified.timestamp()
        remaining = s.sidecar_grace_seconds - age
        if remaining <= 0:
            return False
        message = {"type": SIDECAR_CHECK, "bucket": t.bucket, "key": t.key,
                   "version_id": job.source.version_id, "etag": job.source.etag}
        self.scheduler.defer(message, max(1, min(900, int(remaining + 0.999))))
        self.log(f"waiting for {what}", key=t.key, seconds=int(remaining + 0.999))
        return True

    def _find_companion(self, job: Job, companion: Companion) -> Resolution:
        """Fill `job.companions` with this companion, wait for it, or end the job (see docs/operations.md)."""
        named = job.params.effective.get(companion.name)
        if named == ALPHA_MASK and companion.alpha_fallback:
            return Resolution.READY
        found = self._companion_info(job, companion, job.siblings)
        if found is not None:
            job.companions[companion.name] = found
            return Resolution.READY
        where = f"s3://{job.trigger.bucket}/{self._companion_key(job, companion)}" if named else " or ".join(
            p + "<png|jpg|webp>" for p in keys.companion_prefixes(job.trigger.key, companion.suffix))
        if self._wait(job, f"its {companion.name} ({where})"):
            return Resolution.WAITING
        if named or companion.required:
            raise JobError("missing_parameters", f"{job.params.operation} needs its {companion.name}, and none was "
                           f"found at {where}", details={"errors": [P.entry(
                               companion.name, job.merged.origin(companion.name) if named else "convention",
                               f"no {companion.name} image found at {where}")]})
        return Resolution.READY  # the mask falls back to the image's alpha channel (core/masks.py)

    def _companion_key(self, job: Job, companion: Companion) -> str:
        named = str(job.params.effective.get(companion.name))
        try:
            return keys.companion_key(job.trigger.key, named)
        except ValueError as exc:
            where = job.merged.origin(companion.name)
            raise P.invalid([P.entry(companion.name, where, str(exc), value=named)]) from None

    def _companion_info(self, job: Job, companion: Companion, siblings: Listing | None = None) -> ObjectInfo | None:
        """The companion object that applies now: the named key, else the first found by convention
        (from `siblings`, the listing beside the image, where it covers the convention's prefix)."""
        t = job.trigger
        named = job.params.effective.get(companion.name)
        if named == ALPHA_MASK and companion.alpha_fallback:
            return None  # no file: the image's alpha channel (the change check after the call read "alpha"
            # as a key, refused it as invalid_parameters and recorded a failure for a paid call)
        if named is not None:
            return self.store.head(t.bucket, self._companion_key(job, companion))
        for prefix in keys.companion_prefixes(t.key, companion.suffix):
            listed = siblings.under(prefix) if siblings is not None else None
            for key in listed if listed is not None else self.store.list_keys(t.bucket, prefix, limit=20):
                rest = key[len(prefix):]
                if keys.is_image(key) and "/" not in rest and "." not in rest:
                    return self.store.head(t.bucket, key)
        return None

    def validate(self, merged: P.MergedParams) -> tuple[JobParams, ModelAdapter]:
        """The operation and model these parameters select (if this deployment allows them), and the
        model's validation of them."""
        operation, model_id = self._operation(merged)
        if not self.model_allowed(model_id):
            configured = self.settings.operation_models.get(operation)
            allowed = (configured,) if configured else self.settings.allowed_model_ids
            raise P.invalid([{"field": "model_id", "source": merged.origin("model_id"), "value": model_id,
                              "message": "is not enabled in this deployment (an ARN must be of this account "
                                         "and name an enabled id)", "allowed": ", ".join(allowed)}])
        adapter = self.registry(model_id, merged.origin("model_id"))
        language = self._prompt_language(merged)
        params = adapter.validate(model_id, P.without(merged, P.PIPELINE_FIELDS))
        params.prompt_language = language
        params.effective.update({k: merged.values[k] for k in P.PIPELINE_FIELDS if k in merged.values})
        return params, adapter

    @staticmethod
    def _prompt_language(merged: P.MergedParams) -> str:
        try:
            return translation.language_of(merged.values.get("prompt_language"))
        except JobError as exc:
            problem = {**exc.details["errors"][0], "source": merged.origin("prompt_language")}
            raise P.invalid([problem]) from None

    def _operation(self, merged: P.MergedParams) -> tuple[str, str]:
        """(operation, model id) of a job. `operation` picks the deployment's model for it; a model id the
        job names implies its operation (both given: they must agree). Default: image-to-image."""
        given = merged.values.get("operation")
        operation = normal_name(given) if isinstance(given, str) else IMAGE_TO_IMAGE
        if operation not in NAMES:
            raise P.invalid([P.entry("operation", merged.origin("operation"), "is not an operation", value=given,
                                     allowed=", ".join(NAMES))])
        model_id = merged.values.get("model_id", self.settings.model_id)  # a non-empty string (params.py)
        if not merged.origin("model_id").startswith(P.DEPLOYMENT_PREFIX):  # the job named its model
            implied = getattr(BY_MODEL.get(base_model_id(model_id)), "name", IMAGE_TO_IMAGE)
            if given is not None and implied != operation:
                raise P.invalid([P.entry("operation", merged.origin("operation"), f"asks for {operation}, but "
                                         f"model_id {model_id!r} (from {merged.origin('model_id')}) is the "
                                         f"{implied} model: set one of them", value=given)])
            operation = implied
        elif operation != IMAGE_TO_IMAGE:
            model_id = self.settings.operation_models.get(operation)
            if model_id is None:
                enabled = ", ".join([IMAGE_TO_IMAGE, *self.settings.operation_models])
                raise P.invalid([P.entry("operation", merged.origin("operation"), "is not enabled in this "
                                         "deployment (the CDK context key `operations` enables operations)",
                                         value=given, allowed=enabled)])
        if operation != IMAGE_TO_IMAGE and operation not in self.settings.operation_models:
            raise P.invalid([P.entry("model_id", merged.origin("model_id"), f"is the {operation} model, and "
                                     f"{operation} is not enabled in this deployment", value=model_id,
                                     allowed=", ".join([IMAGE_TO_IMAGE, *self.settings.operation_models]))])
        return operation, model_id

    def model_allowed(self, model_id: str) -> bool:
        """A configured id exactly, or an ARN / inference profile of one: a foundation-model ARN, an
        inference profile of this account, a profile whose geography (`us.`) a configured image-to-image
        id uses. `eu.` where only `us.` is configured, or another account's ARN, is not (IAM would refuse
        it too). An enabled operation's model is allowed as configured (or as an ARN of it)."""
        allowed, services = self.settings.allowed_model_ids, set(self.settings.operation_models.values())
        if not allowed or model_id in allowed or model_id in services:
            return True
        account, resource = parse_model_ref(model_id)
        if account is None or (account and account != self.account_id):
            return False
        if resource in allowed or resource in services:
            return True
        geography, base = split_profile(resource)
        # The geography rule is image-to-image's: the services' `us.` profiles must not lend theirs.
        configured = [split_profile(parse_model_ref(m)[1]) for m in allowed if m not in services]
        return bool(geography) and (geography, base) in {(g, b) for g, _ in configured if g
                                                         for _, b in configured}

    def _check_output_keys(self, job: Job) -> None:
        """The outputs' keys must fit S3's limit: found now, not after the model was paid."""
        prefix = self._output_prefix(job)
        image_key, _ = records.output_keys(prefix, job.trigger.key, job.params.output_format)
        if not records.key_fits(image_key):
            size = len(image_key.encode("utf-8", "surrogatepass"))
            raise JobError("invalid_parameters", f"the output key would be {size:,} bytes (output prefix + input "
                           f"key + .{job.params.output_format}); S3 keys may have at most {records.MAX_KEY_BYTES:,} "
                           "bytes: use a shorter input key", details={"errors": [
                               {"field": "key", "source": "the input object's key", "value": job.trigger.key[:200],
                                "message": f"too long for its output key ({size:,} bytes)"}]})

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
            record = records.failure_record(self._common(job, "failed", attempt), exc.as_record())
        except Exception as exc:  # a defect: recorded at once, never retried
            self.log_exception("internal error", job_id=job.job_id, key=job.trigger.key)
            record = records.failure_record(self._common(job, "failed", attempt),
                                            internal_error(exc, job.job_id).as_record())
        change = self._changed_since_resolved(job)
        if change == "superseded":
            self.log("superseded while running: a newer image or sidecar version decides", key=job.trigger.key)
            self._drop_checkpoint(job)
            return None
        if change == "deleted":
            image = None  # the user removed the input: store nothing made from it
            error = JobError("source_not_found", f"s3://{job.trigger.bucket}/{job.trigger.key} was deleted while "
                             "the job ran; its output was not stored")
            record = records.failure_record(self._common(job, "failed", attempt), error.as_record())
        if image is not None:
            t0 = time.perf_counter()
            try:
                self.store.put(self.settings.output_bucket, *image)
                timings["store"] = _ms(t0)
            except JobError as exc:
                if exc.retryable:
                    raise  # the checkpoint lets the next delivery store it without a second model call
                record = records.failure_record(self._common(job, "failed", attempt), exc.as_record())
        timings["total"] = _ms(started)
        record["timings_ms"] = {**record.get("timings_ms", {}), **timings}
        self._store_record(job, record, prefix)
        self._drop_checkpoint(job)
        return record

    def _changed_since_resolved(self, job: Job) -> str | None:
        """"deleted" or "superseded" when the image, or which sidecar applies, changed since this job
        resolved its parameters; None when it did not."""
        t = job.trigger
        if job.source is None or not job.layers_read:
            return None  # it failed before it knew which sidecar applies: its failure is the outcome
        current = self.store.head(t.bucket, t.key, job.source.version_id if t.kind == "job" else None)
        if current is None:
            return "deleted"
        if t.kind == "job":
            return None  # explicit requests are about the version they named
        if current.version != job.source.version:
            return "superseded"
        siblings = self._siblings(t.bucket, t.key)
        heads = (self.store.head(t.bucket, k) for k in keys.sidecar_candidates(t.key) if siblings.has(k) is not False)
        applies = next((info for info in heads if info is not None), None)
        now = (applies.key, applies.version) if applies else None
        if now != ((job.sidecar.key, job.sidecar.version) if job.sidecar else None):
            return "superseded"
        # Only a job that looked its companions up can have seen them change: one that failed while looking
        # (a permanent fault on the mask's LIST or HEAD) otherwise read as superseded and left no record.
        for companion in job.params.companions if job.params and job.companions_read else ():
            before, current = job.companions.get(companion.name), self._companion_info(job, companion, siblings)
            if (before and (before.key, before.version)) != (current and (current.key, current.version)):
                return "superseded"  # a new (or first) mask or style image: its upload runs the job again
        return None

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
        prepared = images.prepare(data, lambda w, h: adapter.target_size(w, h, params.fit), params.fit,
                                  self.settings.max_input_pixels,
                                  alpha=any(c.alpha_fallback for c in params.companions), keep_alpha=params.keep_alpha)
        companions, companion_refs = self._companion_images(job, prepared)
        t1 = time.perf_counter()
        params, translated = self._translated(job, params, prefix)
        timings["translate"] = _ms(t1)
        body = adapter.build_body(params, prepared.base64, companions)
        self._check_before_the_call(params, prepared, body)
        timings["prepare"] = _ms(t0)
        t0 = time.perf_counter()
        result = self._model_result(job, params, adapter, body)
        timings["model"] = _ms(t0)
        t0 = time.perf_counter()
        output = images.finish_output(result.images[0], prepared, params.output_format, params.restore_aspect)
        image_key, _ = records.output_keys(prefix, source.key, output.format)
        seed = result.seeds[0] if result.seeds else params.seed
        timings["finish"] = _ms(t0)
        t0 = time.perf_counter()
        stored, provenance = self._provenance(job, output, data, prepared.source.format)
        timings["provenance"] = _ms(t0)
        image = (image_key, stored, output.content_type, _output_metadata(job, params.model_id, seed))
        record = records.success_record(
            self._common(job, "succeeded", attempt),
            request=params.request, seeds=result.seeds or [seed],
            outputs=[{"bucket": self.settings.output_bucket, "key": image_key, "content_type": output.content_type,
                      "width": output.width, "height": output.height, "bytes": len(stored), "seed": seed}],
            input_info={"width": prepared.source.width, "height": prepared.source.height,
                        "format": prepared.source.format, "mode": prepared.source.mode,
                        "frames": prepared.source.frames, "exif_orientation": prepared.source.orientation,
                        "bytes": prepared.source.bytes},
            prepared={"width": prepared.width, "height": prepared.height, "fit": prepared.fit,
                      "restore_aspect": params.restore_aspect},
            dropped=params.dropped, timings_ms=timings)
        if companion_refs:
            record["companions"] = companion_refs
        record["provenance"] = provenance
        if translated is not None:
            record["translation"] = translated
        return record, image

    def _translated(self, job: Job, params: JobParams, prefix: str) -> tuple[JobParams, dict[str, Any] | None]:
        """The job's parameters with its prompts in English, and what the record says about it (None: every
        prompt was English, nothing to say). A translation is checkpointed like the model's answer, so a
        redelivery never pays for it twice (docs/parameters.md#prompt-language); each call takes a ticket
        from the translation model's own quota, and a refusal (`quota_wait`) keeps the texts already paid for."""
        todo = translation.needing_translation(translation.texts_of(params.request), params.prompt_language)
        if not todo:
            return params, None
        languages = sorted({language for _, language in todo})
        if self.translator is None:
            return params, {"translated": False, "detected": languages,
                            "reason": "translation is off in this deployment (IMG2IMG_TRANSLATION_MODEL_ID): "
                                      "the prompts went to the model as written"}
        key = self._checkpoint_key(job) + ".translation.json"
        saved = self.store.get(self.settings.output_bucket, key)
        started = time.perf_counter()
        done: dict[str, str] = json.loads(saved[0]) if saved else {}
        paid = False
        try:
            for text, language in todo:
                if text.path not in done:
                    done[text.path] = translation.translate(self.translator, self.quota, text.text, language)
                    paid = True
        finally:  # also when a later text is refused or fails: the next delivery pays only for the rest
            if paid:
                try:
                    self.store.put(self.settings.output_bucket, key,
                                   json.dumps(done, ensure_ascii=False).encode(), "application/json")
                except JobError as exc:
                    self.log("could not checkpoint the translation", key=job.trigger.key, error=exc.code)
        described = {"translated": True, "model_id": self.translator.model_id, "detected": languages,
                     "original": {t.path: t.text for t, _ in todo},
                     "english": {t.path: done[t.path] for t, _ in todo}, "ms": _ms(started),
                     **({"resumed": True} if saved else {})}
        return replace(params, request=translation.with_texts(params.request, done)), described

    def _provenance(self, job: Job, output: images.OutputImage, source_bytes: bytes,
                    source_format: str) -> tuple[bytes, dict[str, Any]]:
        """The output as stored: marked as AI-generated in its XMP (always), then signed with a C2PA
        manifest where this deployment has a signing key (docs/provenance.md). The manifest's hash covers
        the XMP, so the marking comes first."""
        params = job.params
        marking = xmp.Marking(source_type_of(params.operation), params.model_id, job.job_id)
        data = xmp.mark(output.data, output.format, marking)
        described = {"xmp": {"digital_source_type": marking.digital_source_type}}
        if self.signing is not None:
            manifest = c2pa_manifest.build_manifest(
                source_type=marking.source_type, model_id=params.model_id, job_id=job.job_id,
                input_sha256=c2pa_manifest.sha256(source_bytes),
                input_format=CONTENT_TYPES.get({"jpg": "jpeg"}.get(source_format, source_format)))
            signed = c2pa_manifest.sign(data, output.format, manifest, self.signing.key())
            data, described["c2pa"] = signed.data, signed.record()
        return data, described

    def _companion_images(self, job: Job, prepared: images.PreparedImage) -> tuple[dict[str, str], dict[str, Any]]:
        """({body field: base64 PNG}, {companion: what was read}) for the job's mask / style image."""
        params, adapter = job.params, job.adapter
        bodies, refs = {}, {}
        for companion in params.companions:
            info = job.companions.get(companion.name)
            if info is None:  # resolve allowed it: the image's alpha channel is the mask
                png = masks.mask_from_alpha(prepared, params.mask_invert)
                refs[companion.name] = {"from": "alpha", "coverage": masks.coverage(png)}
            else:
                found = self.store.get(info.bucket, info.key, info.version_id)
                if found is None:
                    raise JobError("source_not_found", f"the {companion.name} s3://{info.bucket}/{info.key} was "
                                   "deleted before it was read")
                if companion.is_mask:
                    png = masks.prepare_mask(found[0], prepared, params.mask_invert, self.settings.max_input_pixels,
                                             edit_is_white=params.mask_edit_is_white)
                else:
                    png = images.prepare(found[0], lambda w, h: adapter.target_size(w, h, params.fit), params.fit,
                                         self.settings.max_input_pixels).png
                refs[companion.name] = {**info.ref(), **({"coverage": masks.coverage(png, params.mask_edit_is_white)}
                                                         if companion.is_mask else {})}
            bodies[companion.body_field] = base64.b64encode(png).decode("ascii")
        return bodies, refs

    def _check_before_the_call(self, params: JobParams, prepared: images.PreparedImage, body: dict) -> None:
        """Limits that would otherwise be discovered after the model was paid."""
        size = len(json.dumps(body, separators=(",", ":"), allow_nan=False))
        if size > MAX_REQUEST_BYTES:
            raise JobError("invalid_image", f"the model request would be {size:,} bytes; Bedrock accepts at most "
                           f"{MAX_REQUEST_BYTES:,}: send a smaller image")
        width, height = images.planned_output_size(prepared, params.restore_aspect)
        scale = math.sqrt(params.output_pixels / (width * height)) if params.output_pixels else params.output_scale
        images.check_output_size(round(width * scale), round(height * scale), params.output_format)

    def _model_result(self, job: Job, params: JobParams, adapter: ModelAdapter, body: dict) -> GenerationResult:
        """The model's answer: from this run's checkpoint when an earlier delivery already paid for it,
        else from one model call, checkpointed at once so no later fault makes us pay again."""
        bucket, key = self.settings.output_bucket, self._checkpoint_key(job)
        saved = self.store.get(bucket, key)
        if saved is not None:
            data, info = saved
            self.log("resuming from the checkpoint of an earlier delivery", key=job.trigger.key)
            seeds = [int(s) for s in (info.metadata.get("seeds") or "").split(",") if s.strip().isdigit()]
            return GenerationResult(images=[data], image_format=images.sniff_format(data) or "png", seeds=seeds)
        self._check_time_for_a_model_call()
        result = adapter.parse_response(within_quota(self.quota, params.model_id,
                                                     lambda: self.model.invoke(params.model_id, body),
                                                     reservation=job.trigger.reservation))
        try:
            self.store.put(bucket, key, result.images[0], "application/octet-stream",
                           {"seeds": ",".join(str(s) for s in result.seeds), "job-id": job.job_id})
        except JobError as exc:  # without a checkpoint the job still completes now; only a later fault re-pays
            self.log("could not checkpoint the model's answer", key=job.trigger.key, error=exc.code)
        return result

    def _checkpoint_key(self, job: Job) -> str:
        return records.staging_key(self.settings.output_prefix, job.run_id)

    def _drop_checkpoint(self, job: Job) -> None:
        if job.params is None:
            return
        try:
            self.store.delete(self.settings.output_bucket, self._checkpoint_key(job))
            if self.translator is not None and translation.needing_translation(
                    translation.texts_of(job.params.request), job.params.prompt_language):
                self.store.delete(self.settings.output_bucket, self._checkpoint_key(job) + ".translation.json")
        except Exception:  # cleanup only: a leftover expires with the bucket's lifecycle rule for _staging/
            self.log_exception("could not delete the checkpoint", key=job.trigger.key)

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
        record["operation"] = job.params.operation if job.params else _requested_operation(job.merged)
        if job.ignored_metadata:
            record["ignored_metadata"] = job.ignored_metadata
        return record

    def _output_prefix(self, job: Job) -> str:
        """Where this job's outputs go. Event-sourced jobs write only under their own namespace
        (`events/`, docs/events.md), so an event sender can never touch upload or API outputs."""
        t, s = job.trigger, self.settings
        requested = "" if t.error else str((t.output or {}).get("prefix") or "")
        if t.kind == "job" and t.origin == "eventbridge":
            return f"{s.output_prefix}{records.EVENTS_DIR}{requested}"
        if t.bulk_id:  # a row of another source bucket must not overwrite the same key's from the input bucket
            return (requested or s.output_prefix) + keys.bulk_source_dir(t.bucket, s.input_bucket)
        return requested or s.output_prefix

    def _store_record(self, job: Job, record: dict[str, Any], prefix: str) -> None:
        key = records.record_key(prefix, job.trigger.key)
        record["record"] = {"bucket": self.settings.output_bucket, "key": key}
        try:
            self.store.put(self.settings.output_bucket, key, records.to_json(record), "application/json",
                           {"status": record["status"], "job-id": job.job_id})
        except Exception as exc:
            if isinstance(exc, JobError) and exc.retryable:
                raise
            # No record can say it, so the message must come back (from the checkpoint, never paying
            # again) until the write works, or end in the alarmed DLQ: the one place besides a record.
            self.log_exception("could not store the record", job_id=job.job_id)
            raise transient("storage_error", f"could not store the record: {type(exc).__name__}: {exc}") from None
        job.recorded = True
        if job.trigger.bulk_id:
            self._count_bulk_row(job, record)
        if self.events:
            try:
                self.events.publish(SUCCEEDED_EVENT if record["status"] == "succeeded" else FAILED_EVENT,
                                    records.safe(event_detail(record)))
            except Exception:  # the record is the outcome; an event is a notification about it
                self.log_exception("could not publish the outcome event", job_id=job.job_id)

    # ---- bulk jobs (core/bulk.py) -----------------------------------------------------------------
    def _count_bulk_row(self, job: Job, record: dict[str, Any]) -> None:
        """Count a row's record on its bulk job (once per row: a retry of this message may come here again)
        and, if it was the last row, ask for the report. A transient fault raises: the message comes back."""
        if self.progress is None:
            return
        from . import bulk  # only bulk rows need it: kept off the worker's cold start

        t = job.trigger
        line = bulk.line_of_record(record, t.bucket, t.key, t.version_id)
        try:
            state = self.progress.count(t.bulk_id, str(record["status"]), line["error_code"], line)
            bulk.request_report_if_finished(self.progress, state, self._send_report_request)
        except JobError as exc:
            if exc.retryable:
                raise
            self.log_exception("could not count the outcome on its bulk job", job_id=job.job_id)
        except Exception:  # a defect: the record stays the outcome
            self.log_exception("could not count the outcome on its bulk job", job_id=job.job_id)

    def _send_report_request(self, message: dict[str, Any]) -> None:
        if self.scheduler is None:  # no queue to come back on (not the worker): write it now
            self._bulk_report(message["bulk_id"])
        else:
            self.scheduler.defer(message, 0)

    def _bulk_report(self, bulk_id: str) -> list[dict[str, Any]]:
        """A bulk job's rows all have outcomes: its report, then BulkJobCompleted. A transient fault raises
        (the report message comes back, then goes to the alarmed DLQ); a permanent one is logged."""
        if self.progress is None:
            return []
        from . import bulk  # only bulk rows need it: kept off the worker's cold start

        events = self.events
        try:
            bulk.write_report(self.progress, self.store, bulk_id, self.settings.output_bucket,
                              lambda detail: events.publish(bulk.COMPLETED_EVENT, records.safe(detail))
                              if events else None, self.log_exception,
                              datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds"))
        except JobError as exc:
            if exc.retryable:
                raise
            self.log_exception("could not write the bulk job's report", bulk_id=bulk_id)
        except ValueError:  # the manifest no longer parses (ManifestError)
            self.log_exception("could not write the bulk job's report", bulk_id=bulk_id)
        return []

    def _exhausted(self, job: Job, cause: JobError, attempt: int) -> None:
        """The last attempt of a transient fault: its failure record, before the message goes to the DLQ."""
        error = JobError("retries_exhausted", f"gave up after {attempt} attempts: {cause.message}",
                         details={"cause": cause.code})
        self._record_now(job, error, attempt)


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


def _output_metadata(job: Job, model_id: str, seed: int) -> dict[str, str]:
    """The output image's user metadata, kept within S3's 2 KB whatever the source key."""
    source = job.source
    metadata = {
        "source-bucket": source.bucket,
        "source-key": records.metadata_value(source.key),
        "source-version": source.version_id or "",
        "source-etag": source.etag.strip('"'),
        "model-id": records.metadata_value(model_id),
        "seed": str(seed),
        "job-id": records.metadata_value(job.job_id),
    }
    if sum(len(k) + len(v) for k, v in metadata.items()) > records.MAX_METADATA_BYTES - 64:
        del metadata["source-key"]  # the record has it in full
        metadata["source-key-sha256"] = hashlib.sha256(source.key.encode("utf-8", "replace")).hexdigest()
    return {k: v for k, v in metadata.items() if v}


def _needs_prompt(operation: str) -> bool:
    """Image-to-image always does; each Image Service as its table row says."""
    return operation == IMAGE_TO_IMAGE or BY_NAME[operation].needs_prompt


def _requested_operation(merged: P.MergedParams | None) -> str | None:
    """The operation a job asked for, as typed (normalised), when it failed before validating it."""
    if merged is None:
        return None
    value = merged.values.get("operation")
    return normal_name(value) if isinstance(value, str) else IMAGE_TO_IMAGE


def _siblings_prefix(image_key: str) -> str:
    """The longest prefix shared by every sidecar and companion key of `image_key` (keys.py's conventions)."""
    names = keys.sidecar_candidates(image_key) + [p for c in COMPANIONS for p in keys.companion_prefixes(
        image_key, c.suffix)]
    return posixpath.commonprefix(names)


def _superseded(trigger: Trigger, current: ObjectInfo) -> bool:
    if trigger.version_id and current.version_id:
        return trigger.version_id != current.version_id
    if trigger.etag and current.etag:
        return trigger.etag.strip('"') != current.etag.strip('"')
    return False


def _ms(since: float) -> int:
    return int((time.perf_counter() - since) * 1000)
