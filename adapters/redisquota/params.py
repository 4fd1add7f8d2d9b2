"""redisquota params: Istio's redisquota params plus a server URL scheme, timeouts and fail policy.

Quotas are parsed by `adapters.toolkit.quota.parse_quotas`, as memquota's are, with Istio's
redisquota rules: ``validDuration`` is required and > 0, and an absent ``rateLimitAlgorithm`` means
``FIXED_WINDOW``.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.base import ParamError
from adapters.toolkit.params import (
    duration_param,
    param_fields,
    positive_duration_param,
    struct_int_param,
)
from adapters.toolkit.quota import (
    Override,
    QuotaConfig,
    RateLimitAlgorithm,
    dimension_text,
    parse_quotas,
)

__all__ = [
    "Algorithm",
    "Override",
    "QuotaConfig",
    "RedisQuotaParams",
    "RedisTarget",
    "dimension_text",
    "parse_params",
]

_MIN_BUCKET = datetime.timedelta(milliseconds=1)


Algorithm = RateLimitAlgorithm
"""This adapter's name for `RateLimitAlgorithm`."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where Redis is. Standalone: `url` (a redis-py URL). Cluster: `nodes` are seed addresses."""

    url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @property
    def cluster(self) -> bool:
        """Whether this is a Redis Cluster seed list."""
        return bool(self.nodes)


@dataclass(frozen=True, slots=True)
class RedisQuotaParams:
    """The parsed params of a redisquota handler."""

    quotas: tuple[QuotaConfig, ...]
    target: RedisTarget = field(default_factory=lambda: RedisTarget(url="redis://localhost:6379"))
    connection_pool_size: int = 10
    timeout: datetime.timedelta = datetime.timedelta(milliseconds=50)
    request_timeout: datetime.timedelta | None = None
    fail_open: bool = False
    min_deduplication_duration: datetime.timedelta = datetime.timedelta(seconds=1)
    batch_window: datetime.timedelta = datetime.timedelta(milliseconds=1)
    batch_max_items: int = 64


def _bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ParamError(path, f"expected true or false, got {value!r}")


def _host_port(text: str, path: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit("//" + text.strip())
    try:
        port = parts.port or 6379
    except ValueError:
        raise ParamError(path, f"bad port in {text!r}") from None
    if not parts.hostname:
        raise ParamError(path, f"expected host:port, got {text!r}")
    return parts.hostname, port


def _target(value: Any, path: str) -> RedisTarget:
    """Parse ``redisServerUrl``; see the package docstring for the accepted forms."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            raise ParamError(path, "expected at least one cluster node")
        tls = False
        seeds: list[tuple[str, int]] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ParamError(f"{path}[{i}]", f"expected host:port, got {item!r}")
            scheme, sep, rest = item.partition("://")
            if sep and scheme not in ("redis", "rediss"):
                raise ParamError(f"{path}[{i}]", f"unsupported scheme {scheme!r}")
            tls = tls or (sep != "" and scheme == "rediss")
            seeds.append(_host_port(rest if sep else item, f"{path}[{i}]"))
        return RedisTarget(nodes=tuple(seeds), tls=tls)
    if not isinstance(value, str) or not value.strip():
        raise ParamError(path, f"expected a Redis address such as 'localhost:6379', got {value!r}")
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        if "," in text:
            return RedisTarget(
                nodes=tuple(_host_port(part, path) for part in text.split(",") if part.strip())
            )
        host, port = _host_port(text, path)
        return RedisTarget(url=f"redis://{_netloc(host, port)}")
    if scheme in ("redis+cluster", "rediss+cluster"):
        split = urllib.parse.urlsplit("//" + rest)
        userinfo, _, hosts = split.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        nodes = tuple(_host_port(h, path) for h in hosts.split(",") if h.strip())
        if not nodes:
            raise ParamError(path, f"no cluster nodes in {text!r}")
        return RedisTarget(
            nodes=nodes,
            tls=scheme == "rediss+cluster",
            username=urllib.parse.unquote(user) or None,
            password=urllib.parse.unquote(password) or None,
        )
    if scheme in ("redis", "rediss"):
        split = urllib.parse.urlsplit(text)
        if not split.hostname:
            raise ParamError(path, f"no host in {text!r}")
        try:
            _ = split.port
        except ValueError:
            raise ParamError(path, f"bad port in {text!r}") from None
        return RedisTarget(url=text, tls=scheme == "rediss")
    if scheme == "unix":
        return RedisTarget(url=text)
    raise ParamError(
        path, f"unsupported scheme {scheme!r} (use redis, rediss, unix or redis+cluster)"
    )


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_TOP_FIELDS = frozenset(
    {
        "quotas",
        "redisServerUrl",
        "connectionPoolSize",
        "timeout",
        "requestTimeout",
        "failOpen",
        "minDeduplicationDuration",
        "batchWindow",
        "batchMaxItems",
    }
)


def parse_params(raw: Mapping[str, Any]) -> RedisQuotaParams:
    """Parse and validate redisquota params (pure; raises `ParamError` naming the field)."""
    f = param_fields(raw, "", _TOP_FIELDS, sorted_hint=True)
    parsed = parse_quotas(
        f.get("quotas"),
        "quotas",
        default_algorithm=RateLimitAlgorithm.FIXED_WINDOW,
        require_valid_duration=True,
    )
    pool = struct_int_param(f.get("connectionPoolSize", 0), "connectionPoolSize", 0)
    window = duration_param(f.get("batchWindow", "1ms"), "batchWindow")
    if not datetime.timedelta(0) <= window <= datetime.timedelta(milliseconds=100):
        raise ParamError("batchWindow", "must be between 0 and 100ms")
    timeout = positive_duration_param(f.get("timeout", "50ms"), "timeout")
    request_timeout = duration_param(f.get("requestTimeout", "0s"), "requestTimeout")
    if datetime.timedelta(0) < request_timeout < timeout:
        raise ParamError("requestTimeout", "must be 0 (no bound of its own) or at least timeout")
    if request_timeout < datetime.timedelta(0):
        raise ParamError("requestTimeout", "must not be negative")
    return RedisQuotaParams(
        quotas=parsed,
        target=_target(f.get("redisServerUrl", "localhost:6379"), "redisServerUrl"),
        connection_pool_size=pool or 10,  # Istio: 0 means the client's default
        timeout=timeout,
        request_timeout=request_timeout or None,
        fail_open=_bool(f.get("failOpen", False), "failOpen"),
        min_deduplication_duration=positive_duration_param(
            f.get("minDeduplicationDuration", "1s"), "minDeduplicationDuration"
        ),
        batch_window=window,
        batch_max_items=struct_int_param(f.get("batchMaxItems", 64), "batchMaxItems", 1),
    )
