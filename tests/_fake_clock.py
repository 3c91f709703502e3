"""A clock for timing code under test: ``perf_counter`` moves only when a fake backend "works", so measured
latencies and speed ratios are exact whatever the machine's load (no sleeps)."""
from __future__ import annotations

import time


class FakeClock:
    """Stands in for the ``time`` module of the code under test; ``work(ms)`` advances ``perf_counter``."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def work(self, ms: float) -> None:
        self.now += ms / 1e3

    def __getattr__(self, name: str):
        return getattr(time, name)


class FakeScreener:
    """Takes ``ms`` per pair on ``clock``; returns verdict-like dicts with stage timings."""

    def __init__(self, clock: FakeClock, ms: float, backend: str):
        self.clock, self.ms, self.backend = clock, ms, backend

    def screen_batch(self, images, texts):
        self.clock.work(self.ms * len(images))
        return [{"score": 0.1, "ocr_text": "", "backend": self.backend, "timings_ms": {"fusion": self.ms}}
                for _ in images]

    def screen(self, image, text):
        return self.screen_batch([image], [text])[0]
