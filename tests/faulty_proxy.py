"""A TCP proxy on 127.0.0.1 that breaks connections on purpose, for storage-fault tests.

It sits between s3fs and the moto server and, while armed, either resets connections as soon as
they are accepted — the next ``drop`` of them, or all of them during an ``outage`` that starts with
the first connection after arming, or at once (``at_once``: the connections already open are reset
too, as when the endpoint itself goes away) — or cuts a connection once the client has sent ``cut_after``
bytes (an upload dies half-way). Everything else is forwarded as is.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse


class FaultyProxy:
    def __init__(self, upstream_url: str):
        target = urlparse(upstream_url)
        self.upstream = (target.hostname, target.port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.drop = 0  # close this many next connections at once
        self.outage_seconds = 0.0  # reset every connection for this long, from the next one on
        self.outage_until: float | None = None
        self.cut_after: int | None = None  # close a connection after this many client bytes
        self.dropped = 0
        self.cut = 0
        self.closing = False
        self.live: set[socket.socket] = set()  # client-side sockets of forwarded connections
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                now = time.monotonic()
                if self.outage_seconds and self.outage_until is None:
                    self.outage_until = now + self.outage_seconds
                in_outage = self.outage_until is not None and now < self.outage_until
                if self.drop > 0 or in_outage:
                    self.drop = max(0, self.drop - 1)
                    self.dropped += 1
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    client.close()  # a reset, as from a load balancer that lost its backend
                    continue
                cut_after = self.cut_after
                self.live.add(client)
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, cut_after), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, None), daemon=True).start()

    def outage(self, seconds: float, at_once: bool = False) -> None:
        """Reset every connection for ``seconds``, counted from the next connection attempt.

        With ``at_once`` the outage starts now and the open (pooled, keep-alive) connections are reset
        as well: without that, a client that reuses its connections would not notice the outage.
        """
        with self.lock:
            self.outage_seconds, self.outage_until = seconds, None
            if at_once:
                self.outage_until = time.monotonic() + seconds
                for client in list(self.live):
                    _reset(client)
                self.live.clear()

    def _pipe(self, source: socket.socket, sink: socket.socket, cut_after: int | None) -> None:
        sent = 0
        try:
            while chunk := source.recv(65536):
                if cut_after is not None and sent + len(chunk) > cut_after:
                    with self.lock:
                        self.cut += 1
                    break
                sink.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.lock:
            self.live.discard(source)
            self.live.discard(sink)

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        with self.lock:
            for client in list(self.live):
                _reset(client)
            self.live.clear()


def _reset(sock: socket.socket) -> None:
    """Abort a connection with a reset and wake the threads blocked on it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
