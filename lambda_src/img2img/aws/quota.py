"""DynamoDB as the core's QuotaLimiter: one counter item per model and window, one rate item per model.

The decisions (budgets, windows, delays, AIMD) are core/quota.py's; this module only stores them:

- `<model>#<window>`: `ADD n 1` per attempt (ReturnValues UPDATED_NEW), TTL'd a minute after its window.
- `<model>#rate`: the AIMD state (`rpm`, `since`), updated on a throttle with a condition that keeps one
  decrease per cooldown however many sandboxes saw the burst; read at most once per `RATE_CACHE_SECONDS`
  per model and sandbox.

**Table unavailable: fail open.** A DynamoDB error admits the call and counts `QuotaLimiterUnavailable`
(and logs a warning). Bedrock's own throttling still bounds the damage (a throttle is a
transient fault, retried with back-off), whereas failing closed would stop every job, and every refusal
would bring the job back with no end, while the table is out. **Clock skew:** windows are the caller's
clock (see core/quota.py for the bound). **A crashed holder** holds nothing: a ticket is not a lease, so
there is nothing to release.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from ..core import quota as Q
from ..metric_names import QUOTA_UNAVAILABLE, QUOTA_WAITS
from ..observability import logger, metrics
from ..tables import TTL_ATTRIBUTE, key
from .clients import NETWORK_FAULTS, client

RATE_CACHE_SECONDS = 1.0
_FAULTS = (ClientError, BotoCoreError, *NETWORK_FAULTS)


class DynamoDBQuota:
    def __init__(self, table_name: str, budgets: Q.Budgets, *, dynamodb=None,
                 clock: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random,
                 window_seconds: float = Q.WINDOW_SECONDS):
        self.table_name = table_name
        self.budgets = budgets
        self.clock = clock
        self.jitter = jitter
        self.window_seconds = window_seconds
        self._dynamodb = dynamodb
        self._rates: dict[str, tuple[float, Q.Rate | None]] = {}  # model -> (read at, state)
        self._lock = threading.Lock()  # records of a batch run in threads

    @property
    def dynamodb(self):
        if self._dynamodb is None:
            self._dynamodb = client("dynamodb", read_timeout=5, max_attempts=3)
        return self._dynamodb

    def acquire(self, model_id: str) -> int:
        configured = self.budgets.rpm_for(model_id)
        if configured is None:
            return 0
        now = self.clock()
        window = Q.window_of(now, self.window_seconds)
        try:
            rpm = Q.effective_rpm(configured, self._rate(model_id, now), now)
            answer = self.dynamodb.update_item(
                TableName=self.table_name, Key=key(f"{model_id}#{window}"),
                UpdateExpression="ADD #n :one SET #ttl = if_not_exists(#ttl, :ttl)",
                ExpressionAttributeNames={"#n": "n", "#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":one": {"N": "1"},
                                           ":ttl": {"N": str(int((window + 1) * self.window_seconds) + 60)}},
                ReturnValues="UPDATED_NEW")
            count = int(answer["Attributes"]["n"]["N"])
        except _FAULTS as exc:
            self._unavailable(model_id, exc)
            return 0
        wait = Q.decide(count, rpm, now, self.jitter(), self.window_seconds)
        if wait:
            metrics.add_metric(QUOTA_WAITS, MetricUnit.Count, 1)
        return wait

    def throttled(self, model_id: str) -> None:
        configured = self.budgets.rpm_for(model_id)
        if configured is None:
            return
        now = self.clock()
        try:
            state = self._rate(model_id, now, fresh=True)
            new = Q.lowered(configured, state, now)
            if new is None:
                return
            self.dynamodb.update_item(
                TableName=self.table_name, Key=key(f"{model_id}#rate"),
                UpdateExpression="SET #rpm = :rpm, #since = :now, #ttl = :ttl",
                ConditionExpression="attribute_not_exists(#since) OR #since < :cutoff",
                ExpressionAttributeNames={"#rpm": "rpm", "#since": "since", "#ttl": TTL_ATTRIBUTE},
                # Kept until the rate would have climbed all the way back: then it is as if never lowered.
                ExpressionAttributeValues={":rpm": {"N": repr(new.rpm)}, ":now": {"N": repr(now)},
                                           ":cutoff": {"N": repr(now - Q.COOLDOWN)},
                                           ":ttl": {"N": str(int(now + Q.QUIET + Q.STEP / Q.INCREASE + 60))}})
            with self._lock:
                self._rates[model_id] = (now, new)
            logger.info("Bedrock throttled the model: its shared rate is lowered",
                        extra={"model_id": model_id, "rpm": round(new.rpm, 2), "configured": configured})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                self._unavailable(model_id, exc)
            # else: another sandbox lowered it within the cooldown; that decrease stands for this burst
        except _FAULTS as exc:
            self._unavailable(model_id, exc)

    def _rate(self, model_id: str, now: float, fresh: bool = False) -> Q.Rate | None:
        with self._lock:
            cached = self._rates.get(model_id)
        if cached is not None and not fresh and now - cached[0] < RATE_CACHE_SECONDS:
            return cached[1]
        item = self.dynamodb.get_item(TableName=self.table_name, Key=key(f"{model_id}#rate"),
                                      ConsistentRead=fresh).get("Item")
        state = Q.Rate(float(item["rpm"]["N"]), float(item["since"]["N"])) if item else None
        with self._lock:
            self._rates[model_id] = (now, state)
        return state

    def _unavailable(self, model_id: str, exc: BaseException) -> None:
        metrics.add_metric(QUOTA_UNAVAILABLE, MetricUnit.Count, 1)
        logger.warning("quota table unavailable: the model call goes ahead unmetered",
                       extra={"model_id": model_id, "error": f"{type(exc).__name__}: {exc}"[:500]})
