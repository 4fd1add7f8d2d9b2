"""Instance values as text, the way Istio's adapters wrote them (durations, IPs, times, numbers)."""

from __future__ import annotations

import datetime
import ipaddress


def go_duration(value: datetime.timedelta) -> str:
    """A duration as Go's ``time.Duration.String`` writes it: ``1.5s``, ``2m0s``, ``150ms``."""
    nanos = (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1_000
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, scale in (("ns", 1), ("µs", 1_000), ("ms", 1_000_000)):
            if nanos < scale * 1_000:
                return sign + _decimal(nanos, scale) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _decimal(value: int, scale: int) -> str:
    """`value` / `scale` (a power of ten) in decimal, without trailing zeros."""
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(len(str(scale)) - 1, '0').rstrip('0')}"


def ip_text(value: bytes) -> str | None:
    """4 or 16 address bytes as text (an IPv4-mapped IPv6 address as IPv4, as Go prints it);
    None for any other length."""
    if len(value) == 4:
        return str(ipaddress.IPv4Address(value))
    if len(value) == 16:
        address = ipaddress.IPv6Address(value)
        return str(address.ipv4_mapped or address)
    return None


def zap_time(value: datetime.datetime) -> str:
    """A timestamp as Mixer's logs wrote it: ``2006-01-02T15:04:05.000000Z`` (UTC; naive is UTC)."""
    utc = value.astimezone(datetime.UTC) if value.tzinfo else value
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def metric_value(value: object) -> float:
    """An instance value as a float: numbers as is, durations in seconds, numeric strings parsed."""
    if isinstance(value, bool):
        raise ValueError(f"could not extract numeric value for {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"could not extract numeric value for {value!r}") from None
    raise ValueError(f"could not extract numeric value for {value!r}")
