"""Fuzz the Envoy message mappers (ext_authz CheckRequest, ALS StreamAccessLogsMessage).

Input: one selector byte, then a serialized message. Selector % 2 picks:

0. ``envoy.service.auth.v3.CheckRequest`` -> `bag_from_check_request`, then `check_bag` (as the
   ext_authz servicer does);
1. ``envoy.service.accesslog.v3.StreamAccessLogsMessage`` -> `bags_from_access_logs`, without a
   remembered identifier and with an outbound one (as a later message of a stream), then
   `check_bag` on every bag; and again with the names a telemetry config reads as `wanted`,
   whose bags must be the full conversion's restricted to them whenever that succeeds.

Acceptable outcomes are what each servicer handles on purpose: protobuf's ``DecodeError`` (grpc
refuses the message), `mixer.errors.MixerError` (the unary wrapper maps it to a status), and for
ALS also ``ValueError`` (the ALS servicer answers INVALID_ARGUMENT). Anything else, including a
``ValueError`` out of the ext_authz mapper (which would be an INTERNAL error), is a crash. Bags must
hold only the documented value types, with IP attributes of 4 or 16 bytes.

Long run: ``.venv/bin/python tests/fuzz/fuzz_envoy.py -max_total_time=600``
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from google.protobuf.message import DecodeError

from mixer.attributes.bag import Bag
from mixer.attributes.compressed import DEFAULT_IP_ATTRIBUTES
from mixer.attributes.envoy import bag_from_check_request, bags_from_access_logs
from mixer.attributes.limits import DEFAULT_LIMITS, check_bag
from mixer.envoy.service.accesslog.v3.als_pb2 import StreamAccessLogsMessage
from mixer.envoy.service.auth.v3.external_auth_pb2 import CheckRequest
from mixer.errors import MixerError
from tests.fuzz._harness import check_bag as check_values
from tests.fuzz._harness import fuzz_main
from tests.fuzz._proto_mutator import ProtoMutator

NAME = "envoy"
# The message types, indexed by the selector byte modulo their number.
MESSAGES = (CheckRequest, StreamAccessLogsMessage)
STRUCTURAL = ProtoMutator(MESSAGES)
CHECK_ACCEPTED = (DecodeError, MixerError)
ALS_ACCEPTED = (DecodeError, MixerError, ValueError)

# What a telemetry config's report rules read (Istio's standard metrics), and a few more.
WANTED = frozenset(
    [
        "connection.mtls",
        "context.protocol",
        "context.proxy_error_code",
        "context.reporter.kind",
        "destination.principal",
        "destination.service.host",
        "destination.workload.name",
        "request.host",
        "request.size",
        "request.time",
        "request.useragent",
        "response.code",
        "response.duration",
        "response.grpc_status",
        "response.size",
        "source.ip",
        "source.principal",
        "source.workload.name",
        "connection.received.bytes",
        "connection.event",
        "connection.duration",
    ]
)
OUTBOUND = StreamAccessLogsMessage.Identifier(log_name="istio.outbound_http")
OUTBOUND.node.id = "sidecar~10.0.0.1~client.default~default.svc.cluster.local"


def _verify(bag: Bag) -> None:
    check_values(bag, DEFAULT_IP_ATTRIBUTES)
    check_bag(bag, DEFAULT_LIMITS, "attributes")


def TestOneInput(data: bytes) -> None:
    """One fuzz input: see the module docstring for the format and the oracle."""
    if not data:
        return
    payload = data[1:]
    if data[0] % 2 == 0:
        with contextlib.suppress(*CHECK_ACCEPTED):
            _verify(bag_from_check_request(CheckRequest.FromString(payload)))
        return
    try:
        msg = StreamAccessLogsMessage.FromString(payload)
    except DecodeError:
        return
    for identifier in (None, OUTBOUND):
        full = None
        with contextlib.suppress(*ALS_ACCEPTED):
            full = bags_from_access_logs(msg, identifier)
        try:
            some = bags_from_access_logs(msg, identifier, wanted=WANTED)
        except ALS_ACCEPTED:
            # Reading fewer fields can only fail where reading them all does.
            assert full is None, "the wanted conversion failed where the full one did not"
            continue
        for bag in [*(full or ()), *some]:
            _verify(bag)
        if full is not None:
            restricted = [{k: v for k, v in bag.items() if k in WANTED} for bag in full]
            assert [dict(bag) for bag in some] == restricted


if __name__ == "__main__":
    fuzz_main(TestOneInput, NAME, structural=STRUCTURAL)
