"""Powertools' BatchProcessor, processing the records of one batch concurrently (bounded threads).

Each record mostly waits on Bedrock, so running them side by side bills one wait instead of N.
Partial batch semantics are unchanged: each record still succeeds or fails on its own.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType


class ConcurrentBatchProcessor(BatchProcessor):
    def __init__(self, max_workers: int, event_type: EventType = EventType.SQS):
        # A batch whose records all failed (say, all throttled) is reported item by item, not as a
        # function error: the messages return either way, and worker error alarms stay meaningful.
        super().__init__(event_type=event_type, raise_on_entire_batch_failure=False)
        self.max_workers = max_workers

    def process(self) -> list[tuple]:
        if self.max_workers <= 1 or len(self.records) <= 1:
            return super().process()
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(self.records)),
                                thread_name_prefix="record") as pool:
            return list(pool.map(self._process_record, self.records))
