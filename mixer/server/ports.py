"""Whether an address can be listened on, said in words an operator reads: "address in use"."""

from __future__ import annotations

import errno
import socket

from mixer.settings import split_address


class AddressInUse(OSError):
    """Another process listens on the address (mixer's own workers excepted)."""


def ensure_free(address: str) -> None:
    """Raise `AddressInUse` when something listens on `address` (``HOST:PORT``), or `OSError`
    when it cannot be bound for another reason; port 0 always passes.

    It binds a plain socket, without SO_REUSEPORT, so a listener that set SO_REUSEPORT itself
    (another mixer with `--workers N`) is found too. It is a probe: the port is released at once.
    """
    host, port = split_address(address)
    if port == 0:
        return
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        # SO_REUSEADDR as grpc sets it: a port left in TIME_WAIT is free, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise AddressInUse(
                    errno.EADDRINUSE, f"cannot listen on {address}: address already in use"
                ) from None
            raise OSError(err.errno, f"cannot listen on {address}: {err.strerror}") from None
