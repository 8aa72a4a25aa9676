"""A TCP proxy that counts round trips: how many times the client speaks after the server did.

Put it between a database and the server (``proxy.url()``), warm the pool up, then
``with proxy.counting() as trips: ...`` and read ``trips.count``. Every turn of the client
(one or more messages sent before it waits for an answer) is one round trip.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

__all__ = ["RoundTripProxy"]


class _Count:
    def __init__(self) -> None:
        self.count = 0


class RoundTripProxy:
    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._current: _Count | None = None
        self._closed = False
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, user: str = "postgres", database: str = "test") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    @contextlib.contextmanager
    def counting(self) -> Iterator[_Count]:
        counter = _Count()
        with self._lock:
            self._current = counter
        try:
            yield counter
        finally:
            with self._lock:
                self._current = None

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        client_turn = False  # the client spoke last
        while not self._closed:
            try:
                ready, _, _ = select.select([client, server], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        if not client_turn:
                            with self._lock:
                                if self._current is not None:
                                    self._current.count += 1
                        client_turn = True
                        server.sendall(data)
                    else:
                        client_turn = False
                        client.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed = True
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
