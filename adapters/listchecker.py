"""The ``listchecker`` adapter: is a value on a whitelist or blacklist?

Mixer's list adapter, for the ``listentry`` template (the instance's ``value``) and ``apikey``
(its ``api_key``). The list is the ``overrides`` param plus, with ``providerUrl``, a list fetched
over HTTP every ``refreshInterval``.

Entry types:

- ``STRINGS``: exact match. ``CASE_INSENSITIVE_STRINGS``: compared upper-cased, as Mixer did.
- ``IP_ADDRESSES``: addresses and CIDR ranges, IPv4 and IPv6; a bare address is a /32 (IPv4) or
  /128 (IPv6) (Mixer appended ``/32`` to IPv6 addresses too, which made them /32 networks). Host
  bits in a range are ignored (``10.1.2.3/16`` is ``10.1.0.0/16``). An IPv4-mapped IPv6 value
  (``::ffff:10.1.2.3``) is checked as the IPv4 address, as Go's ``net.IPNet.Contains`` did.
  Ranges are merged into sorted disjoint intervals, so a check is one binary search.
- ``REGEX``: RE2 syntax through ``google-re2``, unanchored search (any match), linear time. All
  patterns are combined into one alternation, so a check is one pass over the value.

Values: a string, or an IP address as 4 or 16 raw bytes (rendered as text for string and regex
lists and in messages). Anything else, or text that is not an IP address for an IP list, answers
``INVALID_ARGUMENT``. Whitelist and value absent from the list, or blacklist and value present,
answers ``PERMISSION_DENIED`` with ``"<v> is not whitelisted"`` / ``"<v> is blacklisted"``. Every
such answer carries ``cachingInterval`` / ``cachingUseCount`` as its valid duration and use count.

Provider (``providerUrl``, http or https): fetched with GET in a worker thread by a background task
that starts in `build` when an event loop is running, otherwise on the first check; the first check
waits for the first fetch attempt. Status 200 is required. Content is newline-separated entries
(a trailing ``\\r`` is dropped, empty lines are skipped), or for ``IP_ADDRESSES`` YAML
``whitelist: [...]``. Content whose SHA-1 equals the installed list's is not parsed again. A failed
fetch or unparsable content keeps the last good list serving. When no good fetch has happened for
``ttl`` (or none ever did), the list is gone and every check answers ``failureStatus`` (our
extension; default ``UNAVAILABLE``, so the request is denied: Mixer failed the whole Check with
INTERNAL). Its message is ``failureStatus.message`` if set (so operators can keep fetch details
away from clients), else the last fetch error. Such a result is cached for at most
``refreshInterval``, since the next fetch may fix it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime
import enum
import hashlib
import http.client
import ipaddress
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import re2
import yaml

from adapters.base import (
    INVALID_ARGUMENT,
    OK,
    PERMISSION_DENIED,
    UNAVAILABLE,
    AdapterInfo,
    CheckResult,
    Env,
    Instance,
    ParamError,
)
from adapters.toolkit.params import canonical_fields, duration_param, int_range_param
from mixer.redact import mask_credentials

__all__ = ["INFO", "EntryType", "ListChecker", "ListParams", "build", "parse_params"]

# A larger provider answer is refused rather than read into memory (Mixer's read was unbounded).
MAX_LIST_BYTES: Final = 64 * 1024 * 1024
# Upper bound of one fetch, so a stuck provider cannot stall refreshes (or a first check) for long.
_FETCH_TIMEOUT_CAP: Final = 30.0
# Room for the combined regex; RE2's 8 MiB default runs out (and falls back to slow NFA) near
# a thousand patterns.
_REGEX_MAX_MEM: Final = 64 * 1024 * 1024
_MAX_INT32: Final = 2**31 - 1
# The instance field holding the value, by template.
_VALUE_FIELD: Final = {"listentry": "value", "apikey": "api_key"}


class EntryType(enum.Enum):
    """How list entries are compared with values (Mixer's ``ListEntryType``, same numbers)."""

    STRINGS = 0
    CASE_INSENSITIVE_STRINGS = 1
    IP_ADDRESSES = 2
    REGEX = 3


@dataclass(frozen=True, slots=True)
class ListParams:
    """Parsed ``listchecker`` params. Durations and counts have Mixer's defaults."""

    provider_url: str = ""
    refresh_interval: datetime.timedelta = datetime.timedelta(seconds=60)
    ttl: datetime.timedelta = datetime.timedelta(seconds=300)
    caching_interval: datetime.timedelta = datetime.timedelta(seconds=300)
    caching_use_count: int = 10000
    overrides: tuple[str, ...] = ()
    entry_type: EntryType = EntryType.STRINGS
    blacklist: bool = False
    failure_code: int = UNAVAILABLE
    failure_message: str = ""


# ---------------------------------------------------------------------------------------------
# params


_FIELDS: Final = {
    "providerUrl": "provider_url",
    "refreshInterval": "refresh_interval",
    "ttl": "ttl",
    "cachingInterval": "caching_interval",
    "cachingUseCount": "caching_use_count",
    "overrides": "overrides",
    "entryType": "entry_type",
    "blacklist": "blacklist",
    "failureStatus": "failure_status",
}
_STATUS_FIELDS: Final = {"code": "code", "message": "message"}


def _entry_type_param(value: Any, path: str) -> EntryType:
    if isinstance(value, str):
        with contextlib.suppress(KeyError):
            return EntryType[value.strip().upper()]
    elif isinstance(value, int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return EntryType(value)
    names = ", ".join(t.name for t in EntryType)
    raise ParamError(path, f"expected one of {names}, got {value!r}")


def _check_provider_url(url: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    if not parsed.scheme or not parsed.netloc:
        raise ParamError("providerUrl", f"URL scheme and host cannot be empty: {url!r}")
    if parsed.scheme not in ("http", "https"):
        raise ParamError("providerUrl", f"scheme must be http or https, got {parsed.scheme!r}")


def parse_params(raw: Mapping[str, Any]) -> ListParams:
    """Validate ``listchecker`` params (camelCase or snake_case keys); pure, no I/O."""
    fields = canonical_fields(raw, _FIELDS, "")
    defaults = ListParams()

    url = fields.get("providerUrl", "")
    if not isinstance(url, str):
        raise ParamError("providerUrl", f"expected a URL string, got {url!r}")
    refresh = defaults.refresh_interval
    ttl = defaults.ttl
    if "refreshInterval" in fields:
        refresh = duration_param(fields["refreshInterval"], "refreshInterval")
    if "ttl" in fields:
        ttl = duration_param(fields["ttl"], "ttl")
    if url:
        # As Mixer: refresh and ttl only matter (and are only checked) with a provider.
        _check_provider_url(url)
        if refresh < datetime.timedelta(seconds=1):
            raise ParamError("refreshInterval", f"must be at least 1s, got {refresh}")
        if ttl < refresh:
            raise ParamError("ttl", f"must be at least refreshInterval ({refresh}), got {ttl}")

    caching_interval = defaults.caching_interval
    if "cachingInterval" in fields:
        caching_interval = duration_param(fields["cachingInterval"], "cachingInterval")
        if caching_interval < datetime.timedelta(0):
            raise ParamError("cachingInterval", f"must be >= 0, got {caching_interval}")
    caching_use_count = defaults.caching_use_count
    if "cachingUseCount" in fields:
        caching_use_count = int_range_param(
            fields["cachingUseCount"], "cachingUseCount", 0, _MAX_INT32
        )

    entry_type = defaults.entry_type
    if "entryType" in fields:
        entry_type = _entry_type_param(fields["entryType"], "entryType")

    blacklist = fields.get("blacklist", False)
    if not isinstance(blacklist, bool):
        raise ParamError("blacklist", f"expected true or false, got {blacklist!r}")

    raw_overrides = fields.get("overrides") or []
    if not isinstance(raw_overrides, Sequence) or isinstance(raw_overrides, str | bytes):
        raise ParamError("overrides", f"expected a list of strings, got {raw_overrides!r}")
    overrides: list[str] = []
    for i, entry in enumerate(raw_overrides):
        if not isinstance(entry, str):
            raise ParamError(f"overrides[{i}]", f"expected a string, got {entry!r}")
        try:
            _check_entry(entry_type, entry)
        except ValueError as exc:
            raise ParamError(f"overrides[{i}]", str(exc)) from None
        overrides.append(entry)
    if entry_type is EntryType.REGEX:
        try:
            _RegexMatcher(overrides)
        except ValueError as exc:
            raise ParamError("overrides", str(exc)) from None

    failure = canonical_fields(fields.get("failureStatus"), _STATUS_FIELDS, "failureStatus.")
    failure_code = defaults.failure_code
    if "code" in failure:
        failure_code = int_range_param(failure["code"], "failureStatus.code", 0, _MAX_INT32)
        if failure_code > 16:
            raise ParamError("failureStatus.code", f"not a gRPC status code: {failure_code}")
    failure_message = failure.get("message", "")
    if not isinstance(failure_message, str):
        raise ParamError("failureStatus.message", f"expected a string, got {failure_message!r}")

    return ListParams(
        provider_url=url,
        refresh_interval=refresh,
        ttl=ttl,
        caching_interval=caching_interval,
        caching_use_count=caching_use_count,
        overrides=tuple(overrides),
        entry_type=entry_type,
        blacklist=blacklist,
        failure_code=failure_code,
        failure_message=failure_message,
    )


# ---------------------------------------------------------------------------------------------
# matchers


class _BadValue(ValueError):
    """The value cannot be compared with this list (answered with INVALID_ARGUMENT)."""


class _Matcher(Protocol):
    def contains(self, value: str | bytes) -> bool: ...

    def __len__(self) -> int: ...


def _ip_text(value: bytes) -> str:
    """Render 4/16 raw bytes as Go's ``net.IP.String`` does (IPv4-mapped as dotted quad)."""
    if len(value) == 4:
        return str(ipaddress.IPv4Address(value))
    v6 = ipaddress.IPv6Address(value)
    return str(v6.ipv4_mapped or v6)


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else _ip_text(value)


class _StringMatcher:
    """Exact (or upper-cased) membership in a set."""

    def __init__(self, entries: Iterable[str], fold: bool) -> None:
        self._fold = fold
        self._entries = frozenset(e.upper() if fold else e for e in entries if e)

    def contains(self, value: str | bytes) -> bool:
        text = _text(value)
        return (text.upper() if self._fold else text) in self._entries

    def __len__(self) -> int:
        return len(self._entries)


_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_V4_MAPPED_PREFIX: Final = 0xFFFF  # bits 32..47 of an IPv4-mapped IPv6 address, all above zero


def _parse_network(entry: str) -> _IPNetwork:
    try:
        if "/" in entry:
            return ipaddress.ip_network(entry, strict=False)
        return ipaddress.ip_network(ipaddress.ip_address(entry))
    except ValueError as exc:
        raise ValueError(f"could not parse ip address entry {entry!r}: {exc}") from None


def _merged(networks: Iterable[_IPNetwork]) -> tuple[list[int], list[int]]:
    """Sorted, disjoint [start, end] intervals covering `networks`, as parallel lists."""
    spans = sorted((int(n.network_address), int(n.broadcast_address)) for n in networks)
    starts: list[int] = []
    ends: list[int] = []
    for start, end in spans:
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


class _IPMatcher:
    """Containment in a set of networks: one binary search over merged intervals per check."""

    def __init__(self, networks: Sequence[_IPNetwork]) -> None:
        self._count = len(networks)
        self._v4 = _merged(n for n in networks if n.version == 4)
        self._v6 = _merged(n for n in networks if n.version == 6)

    def contains(self, value: str | bytes) -> bool:
        if isinstance(value, bytes):
            number = int.from_bytes(value, "big")
            v6 = len(value) == 16
        else:
            # Go's net.ParseIP takes no zone; Python's would.
            if "%" in value:
                raise _BadValue(f"{value} is not a valid IP address")
            try:
                addr = ipaddress.ip_address(value)
            except ValueError:
                raise _BadValue(f"{value} is not a valid IP address") from None
            number = int(addr)
            v6 = addr.version == 6
        if v6 and number >> 32 == _V4_MAPPED_PREFIX:
            number &= 0xFFFFFFFF
            v6 = False
        starts, ends = self._v6 if v6 else self._v4
        i = bisect.bisect_right(starts, number) - 1
        return i >= 0 and number <= ends[i]

    def __len__(self) -> int:
        return self._count


def _regex_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    # Only "is there a match" matters; leftmost-longest lets RE2 answer from its DFA alone
    # where leftmost-first needs a second pass to place the match.
    options.longest_match = True
    options.max_mem = _REGEX_MAX_MEM
    return options


def _regex_error(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else exc
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)


# Values whose regex answer a matcher remembers (cleared when full: values come from requests),
# and the longest one remembered (4,096 values of 64 KiB each would hold 256 MiB).
_MAX_REMEMBERED = 4096
_MAX_REMEMBERED_LENGTH = 1024


class _RegexMatcher:
    """Unanchored RE2 search for any of the patterns, as one alternation. Answers are
    remembered per value (checked values repeat: paths, users, hosts); the matcher is rebuilt,
    and its memory emptied, whenever the list changes."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._count = len(patterns)
        self._seen: dict[str, bool] = {}
        options = _regex_options()
        for pattern in patterns:
            try:
                re2.compile(pattern, options)
            except re2.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {_regex_error(exc)}") from None
        # No patterns must match nothing, whereas an empty alternation would match everything.
        self._regex: Any = None
        if patterns:
            combined = "|".join(f"(?:{p})" for p in patterns)
            try:
                self._regex = re2.compile(combined, options)
            except re2.error as exc:
                raise ValueError(f"regex list too large: {_regex_error(exc)}") from None

    def contains(self, value: str | bytes) -> bool:
        text = _text(value)
        found = self._seen.get(text)
        if found is None:
            found = self._regex is not None and self._regex.search(text) is not None
            if len(text) > _MAX_REMEMBERED_LENGTH:
                return found
            if len(self._seen) >= _MAX_REMEMBERED:
                self._seen.clear()
            self._seen[text] = found
        return found

    def __len__(self) -> int:
        return self._count


def _check_entry(entry_type: EntryType, entry: str) -> None:
    """Raise ValueError if `entry` cannot be part of a list of `entry_type`."""
    if entry_type is EntryType.IP_ADDRESSES:
        _parse_network(entry)
    elif entry_type is EntryType.REGEX:
        _RegexMatcher([entry])


def _build_matcher(entry_type: EntryType, entries: Sequence[str]) -> _Matcher:
    """Build the matcher of a whole list; ValueError names the first bad entry."""
    if entry_type is EntryType.IP_ADDRESSES:
        return _IPMatcher([_parse_network(e) for e in entries])
    if entry_type is EntryType.REGEX:
        return _RegexMatcher([e for e in entries if e])
    return _StringMatcher(entries, fold=entry_type is EntryType.CASE_INSENSITIVE_STRINGS)


def _provider_entries(entry_type: EntryType, body: bytes) -> list[str]:
    """The entries of a provider's answer; ValueError if it is malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"list is not UTF-8: {exc}") from None
    if entry_type is not EntryType.IP_ADDRESSES:
        return [line.removesuffix("\r") for line in text.split("\n") if line.removesuffix("\r")]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise ValueError(f"could not parse YAML list: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, Mapping):
        raise ValueError("expected a YAML mapping with a 'whitelist' list")
    items = doc.get("whitelist") or []
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError("'whitelist' must be a list of strings")
    return items


# ---------------------------------------------------------------------------------------------
# provider


class _FetchError(Exception):
    """A fetch or its content failed; the message says why."""


def _fetch_and_build(
    params: ListParams, timeout: float, installed_sha: bytes | None
) -> tuple[bytes, _Matcher] | None:
    """Fetch and parse the provider's list (runs in a worker thread).

    Returns None when the content's SHA-1 equals `installed_sha`, else the new SHA-1 and matcher.
    """
    request = urllib.request.Request(
        params.provider_url, headers={"User-Agent": "mixer-listchecker"}
    )
    url = mask_credentials(params.provider_url)  # what the messages below show
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                raise _FetchError(f"could not fetch list from {url}: HTTP {response.status}")
            body = response.read(MAX_LIST_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise _FetchError(f"could not fetch list from {url}: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise _FetchError(f"could not fetch list from {url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _FetchError(f"could not fetch list from {url}: {exc!r}") from None
    if len(body) > MAX_LIST_BYTES:
        raise _FetchError(f"list from {url} is larger than {MAX_LIST_BYTES} bytes")
    sha = hashlib.sha1(body, usedforsecurity=False).digest()
    if sha == installed_sha:
        return None
    try:
        entries = _provider_entries(params.entry_type, body)
        matcher = _build_matcher(params.entry_type, [*entries, *params.overrides])
    except ValueError as exc:
        raise _FetchError(f"could not parse list from {url}: {exc}") from None
    return sha, matcher


# ---------------------------------------------------------------------------------------------
# handler


class ListChecker:
    """A built ``listchecker`` handler."""

    def __init__(self, params: ListParams, env: Env) -> None:
        self._params = params
        self._env = env
        self._ok = self._result(OK, "")
        self._refresh_seconds = params.refresh_interval.total_seconds()
        self._ttl_seconds = params.ttl.total_seconds()
        self._fetch_timeout = min(self._refresh_seconds, _FETCH_TIMEOUT_CAP)
        self._matcher: _Matcher | None = None
        self._sha: bytes | None = None
        self._last_good = 0.0
        self._last_error = "the list has not been fetched yet"
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # A provider list may have to wait for its first fetch; an inline list never waits.
        self.answers_inline = not params.provider_url
        if not params.provider_url:
            self._matcher = _build_matcher(params.entry_type, params.overrides)
            return
        with contextlib.suppress(RuntimeError):  # no running loop: start on the first check
            self._start(asyncio.get_running_loop())

    def _result(self, code: int, message: str) -> CheckResult:
        return CheckResult(
            status_code=code,
            message=message,
            valid_duration=self._params.caching_interval,
            valid_use_count=self._params.caching_use_count,
        )

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(
            self._refresh_loop(), name=f"listchecker refresh {self._env.handler_name}"
        )

    async def check(self, instance: Instance) -> CheckResult:
        """Answer a ``listentry`` (``value``) or ``apikey`` (``api_key``) instance."""
        matcher = self._matcher if not self._params.provider_url else await self._live_matcher()
        if matcher is None:
            return self._failure()
        value = instance.fields.get(_VALUE_FIELD.get(instance.template, "value"))
        if not isinstance(value, str | bytes) or (
            isinstance(value, bytes) and len(value) not in (4, 16)
        ):
            return self._result(INVALID_ARGUMENT, f"{value!r} is not a valid string or IP address")
        try:
            found = matcher.contains(value)
        except _BadValue as exc:
            return self._result(INVALID_ARGUMENT, str(exc))
        if found != self._params.blacklist:
            return self._ok
        verdict = "is blacklisted" if found else "is not whitelisted"
        return self._result(PERMISSION_DENIED, f"{_text(value)} {verdict}")

    async def _live_matcher(self) -> _Matcher | None:
        """The provider's list, or None if there is none or it is older than ttl."""
        if not self._first_attempt.is_set() and not self._closed:
            if self._task is None:
                self._start(asyncio.get_running_loop())
            # The first check waits for the first fetch, as Mixer fetched before serving.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_attempt.wait(), self._fetch_timeout + 1.0)
        if self._matcher is None or self._env.clock() - self._last_good > self._ttl_seconds:
            return None
        return self._matcher

    def _failure(self) -> CheckResult:
        params = self._params
        reason = self._last_error or f"not refreshed within ttl ({params.ttl})"
        message = params.failure_message or f"no valid list: {reason}"
        return CheckResult(
            status_code=params.failure_code,
            message=message,
            valid_duration=min(params.caching_interval, params.refresh_interval),
            valid_use_count=params.caching_use_count,
        )

    async def _refresh_loop(self) -> None:
        while True:
            await self._refresh_once()
            self._first_attempt.set()
            await asyncio.sleep(self._refresh_seconds)

    async def _refresh_once(self) -> None:
        log = self._env.logger
        name = self._env.handler_name
        try:
            outcome = await asyncio.to_thread(
                _fetch_and_build, self._params, self._fetch_timeout, self._sha
            )
        except _FetchError as exc:
            self._last_error = str(exc)
            log.warning("listchecker %s: %s; keeping the last good list", name, exc)
            return
        except Exception as exc:
            # The refresh loop must outlive any one bad fetch, whatever went wrong in it.
            self._last_error = f"could not refresh list: {exc!r}"
            log.exception("listchecker %s: unexpected refresh failure", name)
            return
        if outcome is not None:
            self._sha, self._matcher = outcome
            log.info("listchecker %s: installed list of %d entries", name, len(self._matcher))
        self._last_good = self._env.clock()
        self._last_error = ""

    async def close(self) -> None:
        """Stop refreshing. A fetch already running in its thread finishes on its own."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def build(params: ListParams, env: Env) -> ListChecker:
    """Build a handler; with a provider, its refresh task starts now if a loop runs."""
    return ListChecker(params, env)


INFO: Final = AdapterInfo(
    name="listchecker",
    description="Checks whether a value is present in a list (whitelist or blacklist)",
    templates=frozenset({"listentry", "apikey"}),
    parse_params=parse_params,
    build=build,
)
