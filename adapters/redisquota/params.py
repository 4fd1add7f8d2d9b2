"""redisquota params: Istio's redisquota params plus a server URL scheme, timeouts and fail policy.

Quota parsing mirrors ``adapters/memquota.py`` (adapters never import each other); the
differences are Istio's: ``validDuration`` is required and > 0, and an absent
``rateLimitAlgorithm`` means ``FIXED_WINDOW``.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from adapters.base import ParamError, StringMap, duration_param

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


class Algorithm(enum.Enum):
    """A rate-limit algorithm (``rateLimitAlgorithm``); the value is the Lua script's code."""

    FIXED_WINDOW = 1
    ROLLING_WINDOW = 2
    TOKEN_BUCKET = 3


@dataclass(frozen=True, slots=True)
class Override:
    """Limits for instances whose dimensions equal all of `dimensions`."""

    dimensions: Mapping[str, str]
    max_amount: int
    valid_duration: datetime.timedelta | None = None
    burst: int | None = None


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """One configured quota."""

    name: str
    max_amount: int
    valid_duration: datetime.timedelta
    algorithm: Algorithm = Algorithm.FIXED_WINDOW
    bucket_duration: datetime.timedelta | None = None
    burst: int | None = None
    overrides: tuple[Override, ...] = ()


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
    fail_open: bool = False
    min_deduplication_duration: datetime.timedelta = datetime.timedelta(seconds=1)
    batch_window: datetime.timedelta = datetime.timedelta(milliseconds=1)
    batch_max_items: int = 64


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _fields(raw: Any, path: str, allowed: frozenset[str]) -> dict[str, Any]:
    """`raw`'s entries keyed by camelCase name; snake_case is accepted, unknown keys rejected."""
    if not isinstance(raw, Mapping):
        raise ParamError(path, f"expected a mapping, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = _camel(str(key))
        where = f"{path}.{name}" if path else name
        if name not in allowed:
            raise ParamError(where, f"unknown field (expected one of {', '.join(sorted(allowed))})")
        if name in out:
            raise ParamError(where, "given twice (camelCase and snake_case)")
        out[name] = value
    return out


def _int(value: Any, path: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise ParamError(path, f"expected an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # protobuf Struct numbers arrive as floats
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)  # proto3 JSON writes int64 as a string
    if not isinstance(value, int):
        raise ParamError(path, f"expected an integer, got {value!r}")
    if value < minimum:
        raise ParamError(path, f"must be >= {minimum}, got {value}")
    return value


def _bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ParamError(path, f"expected true or false, got {value!r}")


def _positive_duration(value: Any, path: str) -> datetime.timedelta:
    parsed = duration_param(value, path)
    if parsed <= datetime.timedelta(0):
        raise ParamError(path, "must be > 0")
    return parsed


def dimension_text(value: Any) -> str:
    """A dimension value as text, the way both config and instances are compared and keyed."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        if len(value) in (4, 16):
            return str(ipaddress.ip_address(value))
        return value.hex()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, StringMap | Mapping):
        return ",".join(f"{k}={dimension_text(v)}" for k, v in sorted(value.items()))
    return str(value)


def _algorithm(value: Any, path: str) -> Algorithm:
    if isinstance(value, str):
        try:
            return Algorithm[value.strip().upper()]
        except KeyError:
            pass
    names = ", ".join(a.name for a in Algorithm)
    raise ParamError(path, f"expected one of {names}, got {value!r}")


_QUOTA_FIELDS = frozenset(
    {
        "name",
        "maxAmount",
        "validDuration",
        "bucketDuration",
        "rateLimitAlgorithm",
        "burst",
        "overrides",
    }
)
_OVERRIDE_FIELDS = frozenset({"dimensions", "maxAmount", "validDuration", "burst"})


def _burst(f: dict[str, Any], path: str, alg: Algorithm) -> int | None:
    if "burst" not in f:
        return None
    if alg is not Algorithm.TOKEN_BUCKET:
        raise ParamError(f"{path}.burst", "burst applies only to rateLimitAlgorithm TOKEN_BUCKET")
    return _int(f["burst"], f"{path}.burst", 1)


def _override(raw: Any, path: str, alg: Algorithm) -> Override:
    f = _fields(raw, path, _OVERRIDE_FIELDS)
    dims = f.get("dimensions")
    if not isinstance(dims, Mapping) or not dims:
        raise ParamError(f"{path}.dimensions", "expected a non-empty map of dimension values")
    if "maxAmount" not in f:
        raise ParamError(f"{path}.maxAmount", "required")
    valid = None
    if "validDuration" in f:
        valid = _positive_duration(f["validDuration"], f"{path}.validDuration")
    return Override(
        dimensions=MappingProxyType({str(k): dimension_text(v) for k, v in dims.items()}),
        max_amount=_int(f["maxAmount"], f"{path}.maxAmount", 1),
        valid_duration=valid,
        burst=_burst(f, path, alg),
    )


def _quota(raw: Any, path: str) -> QuotaConfig:
    f = _fields(raw, path, _QUOTA_FIELDS)
    name = f.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ParamError(f"{path}.name", "required: the quota instance's name")
    if "maxAmount" not in f:
        raise ParamError(f"{path}.maxAmount", "required")
    max_amount = _int(f["maxAmount"], f"{path}.maxAmount", 1)
    if "validDuration" not in f:
        raise ParamError(f"{path}.validDuration", "required")
    valid = _positive_duration(f["validDuration"], f"{path}.validDuration")
    alg = Algorithm.FIXED_WINDOW
    if f.get("rateLimitAlgorithm") is not None:
        alg = _algorithm(f["rateLimitAlgorithm"], f"{path}.rateLimitAlgorithm")
    bucket = None
    if f.get("bucketDuration") is not None:
        bucket = duration_param(f["bucketDuration"], f"{path}.bucketDuration")
        if alg is Algorithm.ROLLING_WINDOW and not _MIN_BUCKET <= bucket <= valid:
            raise ParamError(
                f"{path}.bucketDuration", "must be between 1ms and validDuration for ROLLING_WINDOW"
            )
    overrides = f.get("overrides") or []
    if not isinstance(overrides, Sequence) or isinstance(overrides, str):
        raise ParamError(f"{path}.overrides", "expected a list")
    return QuotaConfig(
        name=name.strip(),
        max_amount=max_amount,
        valid_duration=valid,
        algorithm=alg,
        bucket_duration=bucket,
        burst=_burst(f, path, alg),
        overrides=tuple(
            _override(o, f"{path}.overrides[{i}]", alg) for i, o in enumerate(overrides)
        ),
    )


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
        "failOpen",
        "minDeduplicationDuration",
        "batchWindow",
        "batchMaxItems",
    }
)


def parse_params(raw: Mapping[str, Any]) -> RedisQuotaParams:
    """Parse and validate redisquota params (pure; raises `ParamError` naming the field)."""
    f = _fields(raw, "", _TOP_FIELDS)
    quotas = f.get("quotas")
    if not isinstance(quotas, Sequence) or isinstance(quotas, str) or not quotas:
        raise ParamError("quotas", "required: a non-empty list of quotas")
    parsed = tuple(_quota(q, f"quotas[{i}]") for i, q in enumerate(quotas))
    seen: set[str] = set()
    for i, q in enumerate(parsed):
        if q.name in seen:
            raise ParamError(f"quotas[{i}].name", f"duplicate quota name {q.name!r}")
        seen.add(q.name)
    pool = _int(f.get("connectionPoolSize", 0), "connectionPoolSize", 0)
    window = duration_param(f.get("batchWindow", "1ms"), "batchWindow")
    if not datetime.timedelta(0) <= window <= datetime.timedelta(milliseconds=100):
        raise ParamError("batchWindow", "must be between 0 and 100ms")
    return RedisQuotaParams(
        quotas=parsed,
        target=_target(f.get("redisServerUrl", "localhost:6379"), "redisServerUrl"),
        connection_pool_size=pool or 10,  # Istio: 0 means the client's default
        timeout=_positive_duration(f.get("timeout", "50ms"), "timeout"),
        fail_open=_bool(f.get("failOpen", False), "failOpen"),
        min_deduplication_duration=_positive_duration(
            f.get("minDeduplicationDuration", "1s"), "minDeduplicationDuration"
        ),
        batch_window=window,
        batch_max_items=_int(f.get("batchMaxItems", 64), "batchMaxItems", 1),
    )
