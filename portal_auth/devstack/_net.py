"""Ports and readiness probes over plain sockets (no event loop, so callable from anywhere)."""

from __future__ import annotations

import socket
import struct

from ._proc import DevstackError

__all__ = ["free_port", "kafka_broker_count", "port_accepts", "require_free_port"]

_LOCALHOST = "127.0.0.1"

# Metadata v4: served by Kafka 4.x (which no longer answers v0) and by Tansu, and still
# a non-flexible version, so it needs no tagged-field encoding.
_METADATA_API_KEY = 3
_METADATA_VERSION = 4
_CLIENT_ID = b"portal-auth-devstack"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOCALHOST, 0))
        return int(sock.getsockname()[1])


def preferred_port(port: int) -> int:
    """``port`` when nothing listens on it, else a free one: `portal-auth up` keeps the usual
    ports where it can and still starts next to a server that has one of them."""
    return free_port() if port_accepts(port) else port


def require_free_port(port: int, what: str) -> None:
    """Fail early when a port is taken: a readiness probe would be answered by the wrong server."""
    if port_accepts(port):
        raise DevstackError(f"cannot start {what}: something already listens on 127.0.0.1:{port}")


def port_accepts(port: int, host: str = _LOCALHOST, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_broker_count(port: int, host: str = _LOCALHOST, timeout: float = 2.0) -> int:
    """Brokers listed in a Metadata response, or 0 if the broker cannot answer yet.

    A KRaft broker lists itself only once it is registered and unfenced, which is the
    moment topics can be created, so "at least one broker" means ready.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_metadata_request(correlation_id=1))
            body = _read_frame(sock)
    except (OSError, ConnectionError):
        return 0
    # Response: correlation_id int32, throttle_time_ms int32, brokers array (int32 count).
    if len(body) < 12:
        return 0
    correlation_id, _throttle, brokers = struct.unpack_from(">iii", body)
    return max(brokers, 0) if correlation_id == 1 else 0


def _metadata_request(correlation_id: int) -> bytes:
    header = struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(_CLIENT_ID))
    # topics = null (all topics), allow_auto_topic_creation = false
    body = struct.pack(">ib", -1, 0)
    payload = header + _CLIENT_ID + body
    return struct.pack(">i", len(payload)) + payload


def _read_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", _read_exactly(sock, 4))
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)
