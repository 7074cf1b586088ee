"""Bounded admission: at most ``slots`` syntheses run, at most ``max_queue`` wait, none waits forever.

Beyond either bound a request gets an immediate 503 Overloaded with Retry-After, so the mesh can retry
on another pod instead of piling work onto a full one.
"""

from __future__ import annotations

import asyncio

from .errors import Overloaded


class Lease:
    """A held synthesis slot; ``release`` is idempotent (safe from finally blocks and callbacks)."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission._release()

    def __del__(self) -> None:  # a streamed response that never started still frees its slot
        if self._held:
            self._held = False
            try:
                self._admission._release()
            except RuntimeError:  # event loop already gone at interpreter exit
                pass


class Admission:
    def __init__(self, slots: int, max_queue: int, max_wait_s: float, retry_after_s: int = 1) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.retry_after_s = retry_after_s
        self._sem = asyncio.Semaphore(slots)
        self.waiting = 0
        self.in_flight = 0
        self.draining = False

    def _overloaded(self, why: str) -> Overloaded:
        return Overloaded(
            f"The server is busy ({why}); retry shortly.",
            self.retry_after_s,
            {"in_flight": self.in_flight, "queued": self.waiting, "max_queue": self.max_queue},
        )

    async def acquire(self) -> Lease:
        if self.draining:
            raise Overloaded("The server is shutting down; retry on another instance.", self.retry_after_s)
        # Admitted requests (running + waiting) against the capacity: exact even in the moment after a
        # release, when the woken waiter has not run yet and still counts as waiting.
        if self.in_flight + self.waiting >= self.slots + self.max_queue:
            raise self._overloaded("queue full")
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self.max_wait_s)
        except TimeoutError:
            raise self._overloaded(f"waited {self.max_wait_s:g} s for a worker") from None
        finally:
            self.waiting -= 1
        self.in_flight += 1
        return Lease(self)

    def _release(self) -> None:
        self.in_flight -= 1
        self._sem.release()
