"""cel-go's network extension library (`ext.Network`, Kubernetes' IP and CIDR functions): ip(),
cidr(), isIP(), isCIDR(), ip.isCanonical() and the members of net.IP and net.CIDR values.

A net.IP value is an `IPAddress`: its 4 or 16 packed bytes, so it is also what Mixer's
IP_ADDRESS attributes hold, and this library's `ip()` replaces Mixer's (whose result it keeps).
Two deliberate differences from cel-go, both for Mixer's rules: a net.IP equals the raw bytes
of the same address (`source.ip == ip("10.0.0.1")`), and the members of net.IP and
`cidr.containsIP()` accept those raw bytes (`cidr('10.0.0.0/8').containsIP(source.ip)`).
As in cel-go, parsing is strict: no zones (`fe80::1%eth0`) and no IPv4-mapped IPv6 written
with a dotted quad (`::ffff:1.2.3.4`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from mixer.expr import _cel_runtime as rt
from mixer.expr._cel_library import Library

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_MULTICAST_V4 = ipaddress.ip_network("224.0.0.0/4")
_LINK_LOCAL_MULTICAST_V4 = ipaddress.ip_network("224.0.0.0/24")
_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_MULTICAST_V6 = ipaddress.ip_network("ff02::/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")


def _unmapped(packed: bytes) -> bytes:
    return packed[12:] if len(packed) == 16 and packed.startswith(_V4_MAPPED) else packed


class IPAddress(rt.ExtensionValue, bytes):
    """A net.IP value: the address's packed bytes (4 for IPv4, 16 for IPv6)."""

    __slots__ = ()
    CEL_KIND = "net.IP"

    def __eq__(self, other: object) -> bool:
        # IPv4 equals its IPv4-mapped IPv6 form (Go's net.IP.Equal), and plain IP bytes.
        return isinstance(other, bytes) and _unmapped(bytes(self)) == _unmapped(bytes(other))

    def __hash__(self) -> int:
        return hash(_unmapped(bytes(self)))

    def __repr__(self) -> str:
        return f"ip({self.cel_string()!r})"

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(bytes(self))

    def cel_string(self) -> str:
        return str(self.address)


class CIDR(rt.ExtensionValue):
    """A net.CIDR value: an address (host bits kept, as written) and a prefix length."""

    __slots__ = ("ip", "prefix")
    CEL_KIND = "net.CIDR"

    def __init__(self, ip: IPAddress, prefix: int) -> None:
        self.ip = ip
        self.prefix = prefix

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CIDR)
            and len(self.ip) == len(other.ip)
            and bytes(self.ip) == bytes(other.ip)
            and self.prefix == other.prefix
        )

    def __hash__(self) -> int:
        return hash((bytes(self.ip), self.prefix))

    def __repr__(self) -> str:
        return f"cidr({self.cel_string()!r})"

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network((bytes(self.ip), self.prefix), strict=False)

    def cel_string(self) -> str:
        return f"{self.ip.cel_string()}/{self.prefix}"


def _parse_ip(text: str, what: str = "IP Address") -> IPAddress:
    if "%" in text:
        raise rt.CelError(f"{what} {text!r} with zone value is not allowed")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise rt.CelError(
            f"{what} {text!r} parse error during conversion from string (not an IP_ADDRESS)"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped and "." in text:
        raise rt.CelError(f"IPv4-mapped IPv6 address {text!r} is not allowed")
    return IPAddress(address.packed)


def _parse_cidr(text: str) -> CIDR:
    address, slash, bits = text.partition("/")
    if not slash or not bits.isascii() or not bits.isdigit() or (bits[0] == "0" and bits != "0"):
        raise rt.CelError(f"network address {text!r} parse error during conversion from string")
    ip = _parse_ip(address, "CIDR")
    prefix = int(bits)
    if prefix > len(ip) * 8:
        raise rt.CelError(f"network address {text!r} parse error during conversion from string")
    return CIDR(ip, prefix)


def _as_ip(value: Any, name: str, strings: bool = False) -> IPAddress:
    """`value` as a net.IP: itself, Mixer's raw IP bytes, or (with `strings`) parsed text."""
    if isinstance(value, IPAddress):
        return value
    k = rt.kind(value)
    if k == "bytes" and len(value) in (4, 16):
        return IPAddress(value)
    if strings and k == "string":
        return _parse_ip(value)
    raise rt.no_overload(name, value)


def _as_cidr(value: Any, name: str, strings: bool = False) -> CIDR:
    if isinstance(value, CIDR):
        return value
    if strings and rt.kind(value) == "string":
        return _parse_cidr(value)
    raise rt.no_overload(name, value)


def ip(value: Any) -> IPAddress:
    """`ip(string)`: the address; `cidr.ip()`: the CIDR's address."""
    if isinstance(value, CIDR):
        return value.ip
    if rt.kind(value) != "string":
        raise rt.no_overload("ip", value)
    return _parse_ip(value)


def cidr(value: Any) -> CIDR:
    """`cidr(string)`: the CIDR range, host bits kept."""
    if rt.kind(value) != "string":
        raise rt.no_overload("cidr", value)
    return _parse_cidr(value)


def _is(parse: Any, name: str) -> Any:
    def test(value: Any) -> bool:
        if rt.kind(value) != "string":
            raise rt.no_overload(name, value)
        try:
            parse(value)
        except rt.CelError:
            return False
        return True

    return test


def is_canonical(value: Any) -> bool:
    """`ip.isCanonical(string)`: whether the text is the address's RFC 5952 form."""
    if rt.kind(value) != "string":
        raise rt.no_overload("ip.isCanonical", value)
    return bool(_parse_ip(value).cel_string() == value)


def family(value: Any) -> int:
    """`ip.family()`: 4 or 6."""
    return 4 if len(_as_ip(value, "family")) == 4 else 6


def _predicate(name: str, v4: Any, v6: Any) -> Any:
    def test(value: Any) -> bool:
        address = ipaddress.ip_address(_unmapped(bytes(_as_ip(value, name))))
        return bool(v4(address) if address.version == 4 else v6(address))

    return test


def _global_unicast(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Go's netip.Addr.IsGlobalUnicast: not unspecified, loopback, multicast, link-local or
    the IPv4 broadcast address (private ranges count as global unicast)."""
    if address.is_unspecified or address.is_loopback or address.is_multicast:
        return False
    if address.version == 4:
        return address not in _LINK_LOCAL_V4 and address != ipaddress.IPv4Address("255.255.255.255")
    return address not in _LINK_LOCAL_V6


def contains_ip(network: Any, value: Any) -> bool:
    """`cidr.containsIP(ip or string)`."""
    found = _as_cidr(network, "containsIP")
    address = _as_ip(value, "containsIP", strings=True)
    if len(address) != len(found.ip):
        return False
    return ipaddress.ip_address(bytes(address)) in found.network


def contains_cidr(network: Any, value: Any) -> bool:
    """`cidr.containsCIDR(cidr or string)`: every address of the other is in this one."""
    parent = _as_cidr(network, "containsCIDR")
    child = _as_cidr(value, "containsCIDR", strings=True)
    if len(parent.ip) != len(child.ip) or parent.prefix > child.prefix:
        return False
    return child.network.network_address in parent.network


def masked(value: Any) -> CIDR:
    """`cidr.masked()`: the CIDR with its host bits cleared."""
    found = _as_cidr(value, "masked")
    return CIDR(IPAddress(found.network.network_address.packed), found.prefix)


def is_mask(value: Any) -> bool:
    """`cidr.isMask()`: whether the CIDR has no host bits set."""
    found = _as_cidr(value, "isMask")
    return bytes(found.ip) == found.network.network_address.packed


def prefix_length(value: Any) -> int:
    """`cidr.prefixLength()`."""
    return _as_cidr(value, "prefixLength").prefix


LIBRARY = Library(
    name="network",
    summary="ip() and cidr() values: family, isLoopback, containsIP, containsCIDR, masked, ...",
    functions={
        "ip": ip,
        "cidr": cidr,
        "isIP": _is(_parse_ip, "isIP"),
        "isCIDR": _is(_parse_cidr, "isCIDR"),
        "ip.isCanonical": is_canonical,
        "family": family,
        "isUnspecified": _predicate(
            "isUnspecified", lambda a: a.is_unspecified, lambda a: a.is_unspecified
        ),
        "isLoopback": _predicate("isLoopback", lambda a: a.is_loopback, lambda a: a.is_loopback),
        "isGlobalUnicast": _predicate("isGlobalUnicast", _global_unicast, _global_unicast),
        "isLinkLocalMulticast": _predicate(
            "isLinkLocalMulticast",
            lambda a: a in _LINK_LOCAL_MULTICAST_V4,
            lambda a: a in _LINK_LOCAL_MULTICAST_V6,
        ),
        "isLinkLocalUnicast": _predicate(
            "isLinkLocalUnicast", lambda a: a in _LINK_LOCAL_V4, lambda a: a in _LINK_LOCAL_V6
        ),
        "containsIP": contains_ip,
        "containsCIDR": contains_cidr,
        "masked": masked,
        "isMask": is_mask,
        "prefixLength": prefix_length,
    },
    results={
        "cidr": "net.CIDR",
        "isIP": "bool",
        "isCIDR": "bool",
        "ip.isCanonical": "bool",
        "family": "int",
        "isUnspecified": "bool",
        "isLoopback": "bool",
        "isGlobalUnicast": "bool",
        "isLinkLocalMulticast": "bool",
        "isLinkLocalUnicast": "bool",
        "containsIP": "bool",
        "containsCIDR": "bool",
        "masked": "net.CIDR",
        "isMask": "bool",
        "prefixLength": "int",
    },
    value_types={"ip": "IP_ADDRESS"},
    types=("net.IP", "net.CIDR"),
)
