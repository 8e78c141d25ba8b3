"""What bounds ``brainmri serve`` under a flood: memory held by uploads, slow connections, slow bodies.

Three limits, each answering one way a client can hold the server's
resources without finishing a request:

* **Uploads in memory** (:class:`UploadBudget`, ``--max-pending-mb``): a
  request body is read only after its size (``Content-Length``, or the
  per-request limit when it does not say) is reserved from one budget
  shared by all requests, and released when the request ends. A request
  that does not fit is answered 503 with ``Retry-After`` before its body is
  read, so sixty concurrent 19 MB uploads no longer take the server to
  several GB: at most the budget is held, whatever the number of clients.
* **Headers** (:data:`HEADER_TIMEOUT_S`): uvicorn closes idle keep-alive
  connections, but waits forever for the headers of a request that a client
  sends a byte at a time (slowloris). :class:`HeaderDeadlineProtocol`, its
  HTTP/1.1 protocol with one more timer, closes a connection whose request
  headers are not complete within the deadline, on a new connection and
  between the requests of a kept-alive one.
* **Bodies** (:data:`BODY_IDLE_S`, :data:`BODY_TOTAL_S`): a body that stops
  arriving, or trickles, is answered 408 (:func:`read_body`).

uvicorn's ``limit_concurrency`` (``--workers`` + ``--queue-size`` + 32 by
default) answers 503 to requests beyond it, so the tasks held are bounded
too. Behind a reverse proxy (nginx's ``client_header_timeout``,
``client_body_timeout``) these limits are a second line.

References
----------
RFC 9110, sections 15.5.9 (408 Request Timeout) and 15.6.4 (503 Service
Unavailable, Retry-After); R. Hansen, "Slowloris HTTP DoS", 2009.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds a client has to send the complete headers of a request.
HEADER_TIMEOUT_S = 10.0
#: Seconds a request body may pause between two chunks.
BODY_IDLE_S = 20.0
#: Seconds a whole request body may take.
BODY_TOTAL_S = 120.0


class UploadBudget:
    """Bytes of request bodies that the server holds at once, all requests together.

    Used from the event loop's thread only (no lock needed).

    Parameters
    ----------
    limit : int
        Bytes.

    Examples
    --------
    >>> budget = UploadBudget(100)
    >>> budget.reserve(60), budget.reserve(60), budget.held
    (True, False, 60)
    >>> budget.release(60); budget.held
    0
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0

    def reserve(self, size: int) -> bool:
        """Hold ``size`` bytes if they fit under the limit; whether they did."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        """Give back ``size`` bytes reserved earlier."""
        self.held = max(0, self.held - size)


class BodyTimeout(Exception):
    """The request body stopped arriving, or took too long."""


async def read_body(
    chunks: AsyncIterator[bytes], limit: int, *, idle_s: float | None = None, total_s: float | None = None
) -> bytearray | None:
    """The whole body from ``chunks``, or None as soon as it exceeds ``limit`` bytes.

    Raises
    ------
    BodyTimeout
        No chunk came for ``idle_s`` seconds (default :data:`BODY_IDLE_S`),
        or the body took over ``total_s`` (default :data:`BODY_TOTAL_S`).
    """
    idle_s = BODY_IDLE_S if idle_s is None else idle_s
    total_s = BODY_TOTAL_S if total_s is None else total_s
    body = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_s
    iterator = chunks.__aiter__()
    while True:
        wait = min(idle_s, deadline - loop.time())
        if wait <= 0:
            raise BodyTimeout(f"the request body took over {total_s:g} s")
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), wait)
        except StopAsyncIteration:
            return body
        except TimeoutError:
            raise BodyTimeout(f"the request body paused for over {wait:g} s") from None
        body += chunk
        if len(body) > limit:
            return None


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection that does not complete its request headers in time."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers():
            self._arm_header_timer()
        else:
            self._disarm_header_timer()

    def connection_lost(self, exc) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.logger.info("closed a connection whose request headers took over %g s", self.header_timeout_s)
            self.transport.close()
