"""uvicorn's HTTP/1.1 protocol with TCP_NODELAY on every connection.

With several workers, uvicorn hands each worker the listening socket through ``socket.fromfd``,
whose sockets report protocol 0; asyncio then skips setting TCP_NODELAY on the connections it
accepts, and Nagle's algorithm meets the client's delayed ACK: every response waited ~40 ms
(measured: /healthz 44 ms with 2 workers against 1 ms with one). Setting it here fixes both modes.
"""

from __future__ import annotations

import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
