"""DynamoDB as the core's QuotaLimiter: one counter item per model and window, one rate item per model.

The decisions (budgets, windows, delays, AIMD) are core/quota.py's; this module only stores them:

- `<model>#<window>`: `ADD n 1` per ticket (ReturnValues UPDATED_NEW), TTL'd a minute after its window;
  a returning job's reservation is claimed there (`ADD claimed {ticket}` unless it already contains it).
- `<model>#tail`: the farthest window reserved, raised with a condition (a hint; a lost race costs nothing).
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
        self.jitter = jitter  # kept for callers; delays are aimed into their window (core/quota.py AIM) instead
        self.window_seconds = window_seconds
        self._dynamodb = dynamodb
        self._rates: dict[str, tuple[float, Q.Rate | None]] = {}  # model -> (read at, state)
        self._lock = threading.Lock()  # records of a batch run in threads

    @property
    def dynamodb(self):
        if self._dynamodb is None:
            self._dynamodb = client("dynamodb", read_timeout=5, max_attempts=3)
        return self._dynamodb

    def acquire(self, model_id: str, *, reservation: Q.Reservation | None = None) -> Q.Admission:
        configured = self.budgets.rpm_for(model_id)
        if configured is None:
            return Q.Admission(0)
        now = self.clock()
        try:
            admission = Q.admit(self, model_id, configured, self._rate(model_id, now), now, reservation,
                                self.window_seconds)
        except _FAULTS as exc:
            self._unavailable(model_id, exc)
            return Q.Admission(0)
        if admission.wait:
            metrics.add_metric(QUOTA_WAITS, MetricUnit.Count, 1)
        return admission

    # ---- core.quota.Counters --------------------------------------------------------------------
    def add(self, model_id: str, window: int) -> int:
        answer = self.dynamodb.update_item(
            TableName=self.table_name, Key=key(f"{model_id}#{window}"),
            UpdateExpression="ADD #n :one SET #ttl = if_not_exists(#ttl, :ttl)",
            ExpressionAttributeNames={"#n": "n", "#ttl": TTL_ATTRIBUTE},
            ExpressionAttributeValues={":one": {"N": "1"}, ":ttl": {"N": self._ttl(window)}},
            ReturnValues="UPDATED_NEW")
        return int(answer["Attributes"]["n"]["N"])

    def claim(self, model_id: str, window: int, ticket: int) -> bool:
        try:
            self.dynamodb.update_item(
                TableName=self.table_name, Key=key(f"{model_id}#{window}"),
                UpdateExpression="ADD #c :t SET #ttl = if_not_exists(#ttl, :ttl)",
                ConditionExpression="NOT contains(#c, :n)",
                ExpressionAttributeNames={"#c": "claimed", "#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":t": {"NS": [str(ticket)]}, ":n": {"N": str(ticket)},
                                           ":ttl": {"N": self._ttl(window)}})
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False  # claimed already: a duplicate delivery of the same message
            raise

    def tail(self, model_id: str) -> int | None:
        item = self.dynamodb.get_item(TableName=self.table_name, Key=key(f"{model_id}#tail")).get("Item")
        return int(item["w"]["N"]) if item else None

    def extend_tail(self, model_id: str, window: int) -> None:
        try:
            self.dynamodb.update_item(
                TableName=self.table_name, Key=key(f"{model_id}#tail"),
                UpdateExpression="SET #w = :w, #ttl = :ttl", ConditionExpression="attribute_not_exists(#w) OR #w < :w",
                ExpressionAttributeNames={"#w": "w", "#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":w": {"N": str(window)}, ":ttl": {"N": self._ttl(window)}})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise  # else another sandbox reserved further on already

    def _ttl(self, window: int) -> str:
        return str(int((window + 1) * self.window_seconds + Q.LATE) + 60)

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
                UpdateExpression="SET #rpm = :rpm, #since = :now, #hold = :hold, #top = :top, #ttl = :ttl",
                ConditionExpression="attribute_not_exists(#since) OR #since < :cutoff",
                ExpressionAttributeNames={"#rpm": "rpm", "#since": "since", "#hold": "hold", "#top": "top",
                                          "#ttl": TTL_ATTRIBUTE},
                # Kept until the rate would have climbed all the way back: then it is as if never lowered.
                ExpressionAttributeValues={":rpm": {"N": repr(new.rpm)}, ":now": {"N": repr(now)},
                                           ":hold": {"N": repr(new.hold)}, ":top": {"N": repr(new.top or configured)},
                                           ":cutoff": {"N": repr(now - Q.COOLDOWN)},
                                           ":ttl": {"N": str(int(now + new.hold + Q.QUIET
                                                                 + Q.STEP / Q.INCREASE + 60))}})
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
        state = Q.Rate(float(item["rpm"]["N"]), float(item["since"]["N"]), float(item.get("hold", {}).get("N", 0)),
                       float(item["top"]["N"]) if "top" in item else None) if item else None
        with self._lock:
            self._rates[model_id] = (now, state)
        return state

    def _unavailable(self, model_id: str, exc: BaseException) -> None:
        metrics.add_metric(QUOTA_UNAVAILABLE, MetricUnit.Count, 1)
        logger.warning("quota table unavailable: the model call goes ahead unmetered",
                       extra={"model_id": model_id, "error": f"{type(exc).__name__}: {exc}"[:500]})
