"""Service settings: one frozen dataclass, filled from flags with environment fallbacks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mixer.attributes.limits import Limits
from mixer.attributes.mask import DEFAULT_MASK
from mixer.expr import CEL_LIBRARIES


def env_default(name: str, default: str) -> str:
    """The value of MIXER_<NAME> or `default`."""
    return os.environ.get(f"MIXER_{name}", default)


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too); raises ValueError with a readable message."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_cel_libraries(text: str) -> tuple[str, ...]:
    """The CEL extension libraries a comma-separated `--cel-libraries` value names: ``all``
    is every one (`mixer.expr.CEL_LIBRARIES`), ``none`` or an empty value only the core
    language. Raises ValueError naming an unknown library and the known ones."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    if words == ["all"]:
        return CEL_LIBRARIES
    if words in ([], ["none"]):
        return ()
    unknown = [word for word in words if word not in CEL_LIBRARIES]
    if unknown:
        raise ValueError(
            f"unknown CEL libraries {unknown}; known: {', '.join(CEL_LIBRARIES)}, or all, none"
        )
    return tuple(dict.fromkeys(words))


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
    # "sync" (grpcio thread pool, mixer.api.threaded) or "aio" (grpc.aio).
    server_flavour: str = "sync"
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
    ratelimit_merge_domains: bool = False
    """Merge rate-limit files of one domain (envoyproxy/ratelimit's ``MERGE_DOMAIN_CONFIG``)."""
    ratelimit_shadow_mode: bool = False
    """Answer every RLS call OK, statuses kept (envoyproxy/ratelimit's ``SHADOW_MODE``)."""
    ratelimit_quota_mode: bool = False
    """Every RLS descriptor in quota mode (envoyproxy/ratelimit's ``QUOTA_MODE``)."""
    ratelimit_dynamic_metadata: bool = False
    """RLS answers carry dynamic metadata (``RESPONSE_DYNAMIC_METADATA``)."""
    ratelimit_near_limit_ratio: float = 0.8
    """Share of a limit past which hits count as ``near_limit`` (``NEAR_LIMIT_RATIO``)."""
    ratelimit_epoch_windows: bool = False
    """Rate-limit windows at multiples of their unit since the epoch (as envoyproxy/ratelimit)."""
    ratelimit_max_stat_keys: int = 10_000
    """Distinct request-valued statistics keys kept before folding into the rule's key."""
    # ext_authz: the request header whose value is the quota deduplication id; empty: none,
    # since a header such as x-request-id can come from the end user (see the threat model).
    authz_dedup_header: str = ""
    check_cache_size: int = 100_000
    check_cache_bytes: int = 64 * 1024 * 1024
    max_series: int = 2000
    max_quota_bucket_bytes: int = 64 * 1024 * 1024
    max_config_nodes: int = 100_000
    admin_timeout: float = 10.0
    admin_max_connections: int = 32
    max_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_streams: int = 1000
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    limits: Limits = field(default_factory=Limits)
    cel_libraries: tuple[str, ...] = CEL_LIBRARIES
    """The CEL extension libraries rules may use; the core language is always there."""
    decision_log_handler: str = ""
    """A stdio/otel handler of the config that receives decision log entries ("": off)."""
    decision_log_sample: float = 1.0
    decision_log_mask: tuple[str, ...] = DEFAULT_MASK
