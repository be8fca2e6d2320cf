"""Live event streams' bookkeeping: how many each tenant has open, and the threads their reads share."""

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from api.problems import Problem

T = TypeVar("T")
READERS = 4  # threads the streams' polls share, so open streams never take the request threads


class Streams:
    """The event streams open in this API process, per tenant, and the limiter their reads share."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self.readers = CapacityLimiter(READERS)

    @contextmanager
    def slot(self, tenant: str, cap: int) -> Iterator[None]:
        """Hold one of the tenant's ``cap`` streams for the block (429 when all are taken); used on
        the event loop only."""
        if self.open[tenant] >= cap:
            raise Problem(429, "Too many streams", f"{cap} event streams are open for this tenant; close one first")
        self.open[tenant] += 1
        try:
            yield
        finally:
            self.open[tenant] -= 1
            if not self.open[tenant]:
                del self.open[tenant]

    async def read(self, read: Callable[..., T], *args: Any) -> T:
        """``read(*args)`` (a poll's database reads) in a reader thread, off the event loop."""
        return await anyio.to_thread.run_sync(read, *args, limiter=self.readers)
