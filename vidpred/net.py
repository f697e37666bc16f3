"""The one network helper vidpred needs of its own: a free TCP port on the loopback interface."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (bound, then released): for a process group's rendezvous, a local Ray's
    dashboard, a test server. Another process may take it before the caller binds it; callers bind soon."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
