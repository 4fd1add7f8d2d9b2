"""The mTLS peer's identity as `source.principal`, when the request does not carry one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from mixer.attributes.bag import Bag


def with_peer_principal(bag: Bag, context: grpc.aio.ServicerContext[Any, Any]) -> Bag:
    """`bag` plus ``source.principal`` from the verified client certificate, if it has none."""
    if "source.principal" in bag:
        return bag
    principal = peer_principal(context.auth_context())
    return bag.merged({"source.principal": principal}) if principal else bag


def peer_principal(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The client's identity from its verified certificate: SPIFFE URI SAN, other SAN, or CN."""
    sans = [
        v.decode("utf-8", "replace") for v in auth_context.get("x509_subject_alternative_name", ())
    ]
    for san in sans:
        if san.startswith("spiffe://"):
            return san
    if sans:
        return sans[0]
    cns = list(auth_context.get("x509_common_name", ()))
    return cns[0].decode("utf-8", "replace") if cns else None
