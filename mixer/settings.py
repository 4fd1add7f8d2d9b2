"""Service settings: one frozen dataclass, filled from flags with environment fallbacks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mixer.attributes.limits import Limits


def env_default(name: str, default: str) -> str:
    """The value of MIXER_<NAME> or `default`."""
    return os.environ.get(f"MIXER_{name}", default)


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too); raises ValueError with a readable message."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class Settings:
    """Everything `mixer serve` needs to start."""

    config_dir: Path = Path("rules")
    address: str = "0.0.0.0:9091"
    admin_address: str = "127.0.0.1:15014"
    metrics_address: str = "0.0.0.0:42422"
    workers: int = 1
    # Set by `--workers N` for its own processes only: they share the gRPC port (SO_REUSEPORT).
    reuse_port: bool = False
    log_level: str = "info"
    log_format: str = "json"
    grace_period: float = 10.0
    handler_timeout: float = 1.0
    max_loop_lag: float = 1.0
    reload_debounce: float = 0.2
    poll_interval: float = 5.0
    watch: bool = True
    enable_debug: bool = False
    redis_url: str = ""
    ratelimit_headers: str = "draft"
    check_cache_size: int = 100_000
    max_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_streams: int = 1000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    limits: Limits = field(default_factory=Limits)
