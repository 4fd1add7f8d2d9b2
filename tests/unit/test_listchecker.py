"""The listchecker adapter without a provider: entry types, modes, values, params."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import random
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters import listchecker
from adapters.base import (
    INVALID_ARGUMENT,
    OK,
    PERMISSION_DENIED,
    UNAVAILABLE,
    CheckHandler,
    CheckResult,
    Env,
    Instance,
    ParamError,
)
from adapters.listchecker import EntryType, ListChecker


def make_env() -> Env:
    return Env(
        handler_name="lc.handler.istio-system",
        logger=logging.getLogger("test.listchecker"),
        registry=CollectorRegistry(),
        clock=time.monotonic,
    )


def handler(**params: Any) -> ListChecker:
    return listchecker.build(listchecker.parse_params(params), make_env())


def entry(value: Any) -> Instance:
    return Instance(name="e.instance.istio-system", template="listentry", fields={"value": value})


async def check(h: ListChecker, value: Any) -> CheckResult:
    return await h.check(entry(value))


# --- strings ------------------------------------------------------------------------------------


async def test_strings_whitelist_allows_listed_and_denies_others() -> None:
    h = handler(overrides=["v1", "v2"])
    assert (await check(h, "v1")).status_code == OK
    denied = await check(h, "v3")
    assert denied.status_code == PERMISSION_DENIED
    assert denied.message == "v3 is not whitelisted"
    assert (await check(h, "V1")).status_code == PERMISSION_DENIED  # case matters
    assert (await check(h, "")).status_code == PERMISSION_DENIED


async def test_strings_blacklist_denies_listed_only() -> None:
    h = handler(overrides=["bad"], blacklist=True)
    denied = await check(h, "bad")
    assert denied.status_code == PERMISSION_DENIED
    assert denied.message == "bad is blacklisted"
    assert (await check(h, "good")).status_code == OK


async def test_case_insensitive_strings() -> None:
    h = handler(overrides=["Admin"], entryType="CASE_INSENSITIVE_STRINGS")
    for value in ("admin", "ADMIN", "aDmIn"):
        assert (await check(h, value)).status_code == OK
    assert (await check(h, "admins")).status_code == PERMISSION_DENIED


async def test_caching_params_on_every_result() -> None:
    h = handler(overrides=["a"], cachingInterval="7s", cachingUseCount=3)
    for value in ("a", "b", 42):
        result = await check(h, value)
        assert result.valid_duration == datetime.timedelta(seconds=7)
        assert result.valid_use_count == 3


async def test_defaults_for_caching() -> None:
    result = await check(handler(overrides=["a"]), "a")
    assert result.valid_duration == datetime.timedelta(seconds=300)
    assert result.valid_use_count == 10000


async def test_ip_bytes_value_on_a_string_list_is_rendered_as_text() -> None:
    h = handler(overrides=["10.0.0.1", "2001:db8::1"])
    assert (await check(h, bytes([10, 0, 0, 1]))).status_code == OK
    assert (await check(h, ipaddress.IPv6Address("2001:db8::1").packed)).status_code == OK
    denied = await check(h, bytes([10, 0, 0, 2]))
    assert denied.message == "10.0.0.2 is not whitelisted"


async def test_apikey_template_checks_api_key() -> None:
    h = handler(overrides=["key-1"])
    ok = Instance("k.instance.ns", "apikey", {"api": "svc", "api_key": "key-1"})
    bad = Instance("k.instance.ns", "apikey", {"api": "key-1", "api_key": "key-2"})
    assert (await h.check(ok)).status_code == OK
    assert (await h.check(bad)).message == "key-2 is not whitelisted"


@pytest.mark.parametrize("value", [42, None, True, b"\x01\x02\x03", 1.5])
async def test_values_that_are_neither_string_nor_ip_are_invalid(value: Any) -> None:
    result = await check(handler(overrides=["42"]), value)
    assert result.status_code == INVALID_ARGUMENT
    assert "is not a valid string or IP address" in result.message


# --- IP addresses -------------------------------------------------------------------------------


async def test_ipv4_cidr_and_bare_address() -> None:
    h = handler(entryType="IP_ADDRESSES", overrides=["10.57.0.0/16", "192.168.1.7"])
    assert (await check(h, "10.57.0.0")).status_code == OK
    assert (await check(h, "10.57.255.255")).status_code == OK
    assert (await check(h, bytes([10, 57, 3, 4]))).status_code == OK
    assert (await check(h, "192.168.1.7")).status_code == OK
    for outside in ("10.56.255.255", "10.58.0.0", "192.168.1.6", "192.168.1.8"):
        denied = await check(h, outside)
        assert denied.status_code == PERMISSION_DENIED, outside
        assert denied.message == f"{outside} is not whitelisted"
    denied = await check(h, bytes([10, 58, 0, 1]))
    assert denied.message == "10.58.0.1 is not whitelisted"


async def test_ipv6_cidr_and_bare_address_is_a_single_host() -> None:
    h = handler(entryType="IP_ADDRESSES", overrides=["2001:db8::/32", "fd00::5"])
    assert (await check(h, "2001:db8:ffff::1")).status_code == OK
    assert (await check(h, ipaddress.IPv6Address("2001:db8::9").packed)).status_code == OK
    assert (await check(h, "fd00::5")).status_code == OK
    # A bare IPv6 address is a /128, not a /32 as Mixer made it.
    assert (await check(h, "fd00::6")).status_code == PERMISSION_DENIED
    assert (await check(h, "2001:db9::")).status_code == PERMISSION_DENIED
    # Families do not mix: 10.0.0.0/8 does not contain the IPv6 address ::a00:1.
    h4 = handler(entryType="IP_ADDRESSES", overrides=["10.0.0.0/8"])
    assert (await check(h4, "::a00:1")).status_code == PERMISSION_DENIED


async def test_ipv4_mapped_ipv6_value_is_checked_as_ipv4() -> None:
    h = handler(entryType="IP_ADDRESSES", overrides=["10.0.0.0/8"])
    mapped = ipaddress.IPv6Address("::ffff:10.1.2.3")
    assert (await check(h, mapped.packed)).status_code == OK
    assert (await check(h, "::ffff:10.1.2.3")).status_code == OK
    denied = await check(h, ipaddress.IPv6Address("::ffff:11.1.2.3").packed)
    assert denied.message == "11.1.2.3 is not whitelisted"


async def test_ip_blacklist_and_host_bits_in_ranges() -> None:
    h = handler(entryType="IP_ADDRESSES", overrides=["10.1.2.3/16"], blacklist=True)
    denied = await check(h, "10.1.200.1")
    assert denied.status_code == PERMISSION_DENIED
    assert denied.message == "10.1.200.1 is blacklisted"
    assert (await check(h, "10.2.0.1")).status_code == OK


@pytest.mark.parametrize("value", ["not-an-ip", "10.0.0.256", "fe80::1%eth0", "10.0.0.0/8", ""])
async def test_unparsable_ip_text_is_invalid_argument(value: str) -> None:
    result = await check(handler(entryType="IP_ADDRESSES", overrides=["10.0.0.0/8"]), value)
    assert result.status_code == INVALID_ARGUMENT
    assert result.message == f"{value} is not a valid IP address"


async def test_ip_list_agrees_with_a_linear_scan() -> None:
    rng = random.Random(1234)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for _ in range(300):
        if rng.random() < 0.7:
            networks.append(ipaddress.ip_network((rng.getrandbits(32), rng.randint(8, 32)), False))
        else:
            base = 0x20010DB8 << 96 | rng.getrandbits(96)
            networks.append(ipaddress.ip_network((base, rng.randint(32, 128)), False))
    h = handler(entryType="IP_ADDRESSES", overrides=[str(n) for n in networks])
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for net in networks[:150]:
        # Edges of listed ranges and their neighbours, where interval merging could go wrong.
        for number in (int(net.network_address) - 1, int(net.broadcast_address) + 1):
            limit = 2**32 if net.version == 4 else 2**128
            if 0 <= number < limit:
                probe_cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
                probes.append(probe_cls(number))
        probes.append(net.network_address)
        probes.append(net.broadcast_address)
    probes += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(300)]
    for probe in probes:
        expected = any(probe.version == n.version and probe in n for n in networks)
        value = probe.packed if rng.random() < 0.5 else str(probe)
        result = await check(h, value)
        assert (result.status_code == OK) == expected, probe


# --- regex --------------------------------------------------------------------------------------


async def test_regex_is_an_unanchored_search_over_all_patterns() -> None:
    h = handler(entryType="REGEX", overrides=[r"^admin-\d+$", "evil", "(?i)bot"])
    assert (await check(h, "admin-42")).status_code == OK
    assert (await check(h, "very-evil-user")).status_code == OK
    assert (await check(h, "GoogleBOT")).status_code == OK
    assert (await check(h, "admin-42x")).status_code == PERMISSION_DENIED
    # (?i) stays inside its own pattern.
    assert (await check(h, "EVIL")).status_code == PERMISSION_DENIED


async def test_regex_blacklist_and_empty_list() -> None:
    h = handler(entryType="REGEX", overrides=[r"\.internal$"], blacklist=True)
    assert (await check(h, "db.internal")).message == "db.internal is blacklisted"
    assert (await check(h, "example.com")).status_code == OK
    # No patterns match nothing (not everything, as an empty alternation would).
    assert (await check(handler(entryType="REGEX"), "anything")).status_code == PERMISSION_DENIED


def test_regex_answers_are_remembered_per_value_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(listchecker, "_MAX_REMEMBERED", 8)
    patterns = [r"^u\d*7$", "admin"]
    matcher = listchecker._RegexMatcher(patterns)
    rng = random.Random(7)
    values = [rng.choice(["u", "admin-", "x"]) + str(rng.randrange(40)) for _ in range(400)]
    values += [bytes([10, 0, 0, 7]), bytes([10, 0, 0, 8])]  # IPs are matched as text
    for value in values:
        text = value if isinstance(value, str) else str(ipaddress.ip_address(value))
        expected = any(re.search(p, text) for p in patterns)  # these patterns mean the same in re
        assert matcher.contains(value) == expected
        assert matcher.contains(value) == expected  # the remembered answer
        assert len(matcher._seen) <= 8
    assert matcher.contains(bytes([10, 0, 0, 7])) is False
    assert listchecker._RegexMatcher([r"^10\.0\.0\.7$"]).contains(bytes([10, 0, 0, 7])) is True


def test_pathological_regex_finishes() -> None:
    """`(a+)+$` against a long run of a's then b backtracks exponentially in `re`; RE2 is linear.

    The check runs in a daemon thread joined with a timeout: a CPU-bound call inside the C
    extension cannot be interrupted by asyncio.wait_for, so that is what bounds the test.
    """
    h = handler(entryType="REGEX", overrides=["(a+)+$"])
    value = "a" * 30000 + "b"
    results: list[CheckResult] = []

    thread = threading.Thread(
        target=lambda: results.append(asyncio.run(check(h, value))), daemon=True
    )
    thread.start()
    thread.join(timeout=5.0)
    assert not thread.is_alive(), "regex check did not finish within 5 s"
    assert results[0].status_code == PERMISSION_DENIED
    assert results[0].message == f"{value} is not whitelisted"


# --- params -------------------------------------------------------------------------------------


def test_param_defaults_and_snake_case() -> None:
    params = listchecker.parse_params({})
    assert params == listchecker.ListParams()
    assert params.entry_type is EntryType.STRINGS
    assert params.failure_code == UNAVAILABLE
    snake = listchecker.parse_params(
        {
            "provider_url": "http://lists.example:8080/ips",
            "refresh_interval": "2s",
            "ttl": "1m",
            "caching_interval": "1s",
            "caching_use_count": "5",
            "entry_type": 2,
            "blacklist": True,
            "overrides": ["10.0.0.0/8"],
            "failure_status": {"code": 0, "message": "list down"},
        }
    )
    assert snake.provider_url == "http://lists.example:8080/ips"
    assert snake.refresh_interval == datetime.timedelta(seconds=2)
    assert snake.ttl == datetime.timedelta(minutes=1)
    assert snake.caching_interval == datetime.timedelta(seconds=1)
    assert snake.caching_use_count == 5
    assert snake.entry_type is EntryType.IP_ADDRESSES
    assert snake.blacklist is True
    assert snake.overrides == ("10.0.0.0/8",)
    assert (snake.failure_code, snake.failure_message) == (0, "list down")


def test_corpus_style_params_parse() -> None:
    """The params of the Istio samples (bookinfo whitelist, whitelistip, listcheck)."""
    ip = listchecker.parse_params(
        {"overrides": ["10.57.0.0/16"], "blacklist": False, "entryType": "IP_ADDRESSES"}
    )
    assert ip.entry_type is EntryType.IP_ADDRESSES and ip.overrides == ("10.57.0.0/16",)
    versions = listchecker.parse_params({"overrides": ["v1", "v2"], "blacklist": False})
    assert versions.overrides == ("v1", "v2") and versions.provider_url == ""


def test_durations_are_not_checked_without_a_provider() -> None:
    # As Mixer: refresh and ttl are only validated along with providerUrl.
    params = listchecker.parse_params({"refreshInterval": "10ms", "ttl": "1ms"})
    assert params.refresh_interval == datetime.timedelta(milliseconds=10)


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        ({"providerUrl": "http://"}, "providerUrl", "scheme and host"),
        ({"providerUrl": "lists.example/ips"}, "providerUrl", "scheme and host"),
        ({"providerUrl": "file://localhost/etc/hosts"}, "providerUrl", "http or https"),
        ({"providerUrl": 5}, "providerUrl", "URL string"),
        ({"providerUrl": "http://h", "refreshInterval": "500ms"}, "refreshInterval", "1s"),
        ({"providerUrl": "http://h", "refreshInterval": "10s", "ttl": "5s"}, "ttl", "at least"),
        ({"refreshInterval": "soon"}, "refreshInterval", "duration"),
        ({"cachingInterval": "-1s"}, "cachingInterval", ">= 0"),
        ({"cachingUseCount": -1}, "cachingUseCount", "between"),
        ({"cachingUseCount": "many"}, "cachingUseCount", "integer"),
        ({"entryType": "IPS"}, "entryType", "IP_ADDRESSES"),
        ({"entryType": 7}, "entryType", "expected one of"),
        ({"blacklist": "yes"}, "blacklist", "true or false"),
        ({"overrides": "v1"}, "overrides", "list of strings"),
        ({"overrides": ["v1", 2]}, "overrides[1]", "string"),
        (
            {"entryType": "IP_ADDRESSES", "overrides": ["10.0.0.0/8", "10.0.0/33"]},
            "overrides[1]",
            "could not parse",
        ),
        (
            {"entryType": "IP_ADDRESSES", "overrides": ["::1/129"]},
            "overrides[0]",
            "could not parse",
        ),
        ({"entryType": "REGEX", "overrides": ["ok", "(a"]}, "overrides[1]", "missing )"),
        ({"entryType": "REGEX", "overrides": [r"(\w)\1"]}, "overrides[0]", "invalid regex"),
        ({"failureStatus": {"code": 99}}, "failureStatus.code", "gRPC status"),
        ({"failureStatus": {"reason": "x"}}, "failureStatus.reason", "unknown field"),
        ({"failureStatus": "down"}, "failureStatus", "mapping"),
        ({"providerURL": "http://h"}, "providerURL", "unknown field"),
        ({"entryType": "REGEX", "entry_type": "REGEX"}, "entryType", "given twice"),
    ],
)
def test_param_errors_name_the_field(raw: Mapping[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ParamError) as info:
        listchecker.parse_params(raw)
    assert info.value.path == path
    assert fragment in info.value.message


def test_regex_overrides_are_re2_not_python_re() -> None:
    # Look-ahead is valid for Python's re but not for RE2.
    with pytest.raises(ParamError, match="overrides"):
        listchecker.parse_params({"entryType": "REGEX", "overrides": ["(?=x)"]})


# --- provider content parsing -------------------------------------------------------------------


def test_provider_content_formats() -> None:
    entries = listchecker._provider_entries
    assert entries(EntryType.STRINGS, b"a\r\nb\n\nc") == ["a", "b", "c"]
    assert entries(EntryType.REGEX, b"^x$\n") == ["^x$"]
    yaml_list = b"whitelist:\n- 10.0.0.0/8\n- 2001:db8::/32\n"
    assert entries(EntryType.IP_ADDRESSES, yaml_list) == ["10.0.0.0/8", "2001:db8::/32"]
    assert entries(EntryType.IP_ADDRESSES, b"") == []
    for bad in (b"- 10.0.0.1\n", b"whitelist: 10.0.0.1\n", b"whitelist: [[1]]", b"a: [\n"):
        with pytest.raises(ValueError):
            entries(EntryType.IP_ADDRESSES, bad)
    with pytest.raises(ValueError, match="UTF-8"):
        entries(EntryType.STRINGS, b"\xff\xfe")


# --- contract -----------------------------------------------------------------------------------


async def test_info_and_handler_contract() -> None:
    assert listchecker.INFO.name == "listchecker"
    assert listchecker.INFO.templates == frozenset({"listentry", "apikey"})
    h = listchecker.INFO.build(listchecker.INFO.parse_params({"overrides": ["a"]}), make_env())
    assert isinstance(h, CheckHandler)
    await h.close()
    # A static list needs no loop at build time and keeps answering after close.
    assert (await h.check(entry("a"))).status_code == OK
