"""Ending a streamed HTTP response that a thread is reading.

Closing an httpx response or client from another thread does not wake a thread blocked in
`iter_lines()`: it would wait for the server's next line (an SSE keep-alive comes every 15 s).
Shutting the socket down does: the reader gets an error at once and its thread ends.
"""

from __future__ import annotations

import contextlib
import socket

import httpx


def shut(resp: httpx.Response | None) -> None:
    """Shut down the socket under `resp` (a stream being read elsewhere), if it has one."""
    if resp is None:
        return
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
