"""A Kubernetes Service in miniature: a loopback TCP port whose new connections go to the current
endpoint, while connections already open stay with the one they reached (as kube-proxy's rules do
when a terminating pod leaves the endpoints)."""

from __future__ import annotations

import socket
import threading
from collections import Counter


class Service:
    def __init__(self, endpoint: int):
        self.endpoint = endpoint  # the port of the pod new connections reach; set to move them
        self.connections: Counter[int] = Counter()  # connections forwarded, by endpoint
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            endpoint = self.endpoint
            try:
                upstream = socket.create_connection(("127.0.0.1", endpoint), timeout=10)
            except OSError:
                client.close()  # no pod behind it: the client sees the connection refused-like close
                continue
            upstream.settimeout(None)
            self.connections[endpoint] += 1
            self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)  # pass the close on, as a proxy passes a FIN
        except OSError:
            pass

    def close(self) -> None:
        self._listener.close()
        for sock in list(self._open):
            try:
                sock.close()
            except OSError:
                pass
