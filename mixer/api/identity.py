"""The mTLS peer's identity as `source.principal`, when the request does not carry one."""

from __future__ import annotations

from typing import Any

import grpc

from mixer.attributes.bag import Bag
from mixer.server.tls import peer_principal


def with_peer_principal(bag: Bag, context: grpc.aio.ServicerContext[Any, Any]) -> Bag:
    """`bag` plus ``source.principal`` from the verified client certificate, if it has none."""
    if "source.principal" in bag:
        return bag
    principal = peer_principal(context.auth_context())
    return bag.merged({"source.principal": principal}) if principal else bag
