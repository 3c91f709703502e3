"""Micro-batching: concurrent ``submit(image, text)`` calls grouped into one ``guard.screen_batch``.

A worker thread takes up to ``max_batch`` requests, waiting at most ``max_wait_ms`` after the first one
for more, and runs them through the guard in one pass. Each request gets its own ``Future``: input errors
(``InputError``) are raised by ``submit`` itself when the guard can ``prepare`` requests (decoding then
happens in the caller's thread, in parallel), otherwise they fail only that request's future; a failing
batch is retried one request at a time so one bad request never fails the others.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

_STOP = object()


class BatcherClosed(RuntimeError):
    """``submit`` after ``close``."""


class MicroBatcher:
    def __init__(self, guard: Any, max_batch: int = 8, max_wait_ms: float = 5.0):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.guard = guard
        self.max_batch = int(max_batch)
        self.max_wait = max(0.0, float(max_wait_ms)) / 1e3
        self._prepare = getattr(guard, "prepare", None) if hasattr(guard, "screen_prepared") else None
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self.batches_run = 0
        self.largest_batch = 0
        self._worker = threading.Thread(target=self._loop, name="crossguard-batcher", daemon=True)
        self._worker.start()

    def submit(self, image: Any, text: Any) -> Future:
        """Queue one request; returns a Future resolving to its ``Verdict`` (or raising its error)."""
        future: Future = Future()
        item = self._prepare(image, text) if self._prepare else (image, text)  # InputError raised here
        with self._lock:
            if self._closed:
                raise BatcherClosed("the micro-batcher is closed")
            self._queue.put((item, future))
        return future

    def screen(self, image: Any, text: Any, timeout: float | None = None):
        return self.submit(image, text).result(timeout)

    def _run(self, items: list) -> list:
        if self._prepare:
            return self.guard.screen_prepared(items)
        return self.guard.screen_batch([i for i, _ in items], [t for _, t in items])

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            stop = False
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._execute(batch)
            if stop:
                return

    def _execute(self, batch: list) -> None:
        live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
        if not live:
            return
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(live))
        try:
            results = self._run([item for item, _ in live])
            for (_, fut), verdict in zip(live, results):
                fut.set_result(verdict)
        except BaseException as batch_error:  # noqa: BLE001 - isolate the failing request(s)
            if len(live) == 1:
                live[0][1].set_exception(batch_error)
                return
            for item, fut in live:
                try:
                    fut.set_result(self._run([item])[0])
                except BaseException as e:  # noqa: BLE001
                    fut.set_exception(e)

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish the queued requests, then stop the worker. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join(timeout)

    shutdown = close

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Batcher = MicroBatcher
