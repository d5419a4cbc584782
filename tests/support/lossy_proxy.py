"""A TCP proxy between a Redis client and a real redis-server that loses the answer of one MULTI/EXEC
(or of other commands: ``trigger`` ends an argument of the first, ``last`` one of the last).

Armed, the first connection that sends ``trigger`` becomes the victim; what happens to its
commands depends on ``mode``:

- ``"drop"``: the transaction reaches Redis whole (Redis applies it), then the proxy closes the
  client's connection without passing any answer back (a connection dropped after the EXEC);
- ``"stall"``: the same, but the connection stays open and silent, so the client's own socket
  timeout expires (Redis stalling past redis-py's ``socket_timeout``);
- ``"before"``: the proxy closes the connection before any of the transaction reaches Redis;
- ``"late"``: the proxy forwards the first chunk, then reads nothing for ``hold`` seconds (its
  receive buffer is small, so the rest of the transaction, EXEC included, waits in the client's own
  kernel, unacknowledged, as it would behind a congested or partitioned network), then passes on
  whatever still arrives. The client's socket timeout expires meanwhile; what it does with its
  socket decides whether the rest still reaches Redis, after the client has moved on;
- ``"split"``: the proxy forwards all of the transaction but its final EXEC at once, keeps the
  EXEC until the client has given up on the connection and ``hold`` seconds more, then delivers it
  (bytes that reached Redis's host but that Redis had not read yet: it reads 16 kB a turn);
- ``"strip"``: an HTTP proxy that drops every ``Idempotency-Key`` header line of the requests it
  passes (not armed, no victim): what a client sees of an API that predates the header, or of a
  proxy that does not pass it on;
- ``"hold"``: the proxy forwards none of the transaction (its WATCH included) until the client has
  given up on the connection and ``hold`` seconds more, then delivers all of it on its own
  connection to Redis: bytes that reached a middlebox (or a stalled Redis's socket buffer) and
  that Redis reads only after it served the client's check on another connection.

Every other connection (the client's reconnection included) is passed through untouched. The
proxy disarms itself after one victim; ``victims`` counts them, ``exec_sent`` says whether the
victim's last command was forwarded.
"""

from __future__ import annotations

import re
import socket
import threading
import time


# How long the proxy waits for Redis's answer to what it forwarded before it acts as if Redis had run
# it (only a hung Redis takes that long; a fixed 0.2 s pause assumed it, which a loaded machine need not honour).
ANSWER_WAIT = 5.0


class LossyProxy:
    def __init__(
        self,
        target_port: int,
        mode: str = "drop",
        trigger: str | tuple[str, ...] = "MULTI",
        last: str | tuple[str, ...] = "EXEC",
        target_host: str = "127.0.0.1",
    ):
        assert mode in ("drop", "stall", "before", "late", "split", "hold", "strip"), mode
        self.hold = 1.5
        # the end of that argument (``claim`` in ``finish+claim``), or of any of several
        self.triggers = [b"%s\r\n" % t.encode() for t in ((trigger,) if isinstance(trigger, str) else trigger)]
        self.lasts = [b"%s\r\n" % t.encode() for t in ((last,) if isinstance(last, str) else last)]
        self.target = (target_host, target_port)
        self.mode = mode
        self.armed = False
        self.victims = 0
        self.exec_sent = False
        self.delivered_late = False  # "split"/"hold": the kept bytes were written to Redis's socket
        self.victim_data = b""  # what the victim sent (its lost call)
        self._skip = 0
        self._lock = threading.Lock()
        self._listener = socket.socket()
        if mode == "late":  # before listen, so accepted sockets advertise a small window
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def arm(self, skip: int = 0) -> None:
        """Lose the answer to the (skip+1)th send that carries ``trigger`` from now on."""
        with self._lock:
            self.armed = True
            self._skip = skip

    def close(self) -> None:
        self._closed = True
        for sock in self._sockets:
            _close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            state = {"victim": False}
            threading.Thread(target=self._to_redis, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._to_client, args=(upstream, client, state), daemon=True).start()

    def _to_redis(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        seen = b""
        while True:
            data = _recv(client)
            if not data:
                if state.get("kept"):  # the client gave up; the rest arrives after all
                    time.sleep(self.hold)
                    try:
                        state["answered"] = threading.Event()
                        upstream.sendall(state["kept"])
                        self.exec_sent = True
                        state["answered"].wait(ANSWER_WAIT)  # Redis has run it (not just received it)
                        self.delivered_late = True
                    except OSError:
                        pass
                _close(upstream)
                return
            if self.mode == "strip":  # loopback: a small request's head arrives in one piece
                data = re.sub(rb"(?im)^idempotency-key:[^\r\n]*\r\n", b"", data)
            if not state["victim"] and any(t in data for t in self.triggers):
                with self._lock:
                    if self.armed and self._skip:
                        self._skip -= 1
                    elif self.armed:
                        self.armed = False
                        self.victims += 1
                        state["victim"] = True
                if state["victim"] and self.mode == "before":
                    _close(client)
                    _close(upstream)
                    return
            if state["victim"]:
                seen += data
                self.victim_data = seen
                if self.mode == "split" and seen.endswith(b"*1\r\n$4\r\nEXEC\r\n") and not state.get("kept"):
                    data, state["kept"] = data[:-14], data[-14:]
                if self.mode == "hold":
                    state["kept"] = state.get("kept", b"") + data
                    continue
            if state["victim"] and self.mode == "drop" and any(t in seen for t in self.lasts):
                state.setdefault("answered", threading.Event())
            try:
                upstream.sendall(data)
            except OSError:
                _close(client)
                return
            if state["victim"] and self.mode == "late" and not state.get("held"):
                state["held"] = True
                time.sleep(self.hold)
            if state["victim"] and any(t in seen for t in self.lasts) and not self.exec_sent and self.mode != "split":
                self.exec_sent = True
                if self.mode == "drop":
                    state["answered"].wait(ANSWER_WAIT)  # Redis has run it: its answer, never passed on
                    _close(client)

    def _to_client(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        while True:
            data = _recv(upstream)
            if not data:
                _close(client)
                return
            if state["victim"]:
                if "answered" in state:  # Redis answered what it was sent last: it has run it
                    state["answered"].set()
                continue  # the victim's answers never arrive
            try:
                client.sendall(data)
            except OSError:
                _close(upstream)
                return


def _recv(sock: socket.socket) -> bytes:
    """What arrived, or b"" once the connection is closed or broken (both ends are treated alike)."""
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
