"""The identity an Istio proxy declares in its Envoy `node.metadata`, as attributes.

Istio's sidecars put ``NAME`` (pod), ``NAMESPACE``, ``WORKLOAD_NAME``, ``OWNER``, ``LABELS``
and ``SERVICE_ACCOUNT`` in their node metadata. The proxy is one end of the traffic it reports:
the destination when it reports inbound, the source when outbound. `node_attributes` maps the
keys present onto that side's attributes, the same names kubernetesenv generates, so telemetry
needs no Kubernetes lookup for the reporting proxy itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from google.protobuf.struct_pb2 import Struct
from google.protobuf.struct_pb2 import Value as StructValue

from mixer.attributes.bag import StringMap, Value

# node.metadata key -> attribute suffixes it fills on the proxy's side.
_PLAIN = (
    ("NAME", ("name",)),
    ("NAMESPACE", ("namespace", "workload.namespace")),
    ("WORKLOAD_NAME", ("workload.name",)),
    ("OWNER", ("owner",)),
    ("SERVICE_ACCOUNT", ("serviceAccount",)),
)


def side_of(reporter_kind: str) -> str:
    """The side a reporting proxy is on: ``destination`` for inbound, ``source`` for outbound."""
    return "source" if reporter_kind == "outbound" else "destination"


def node_attributes(metadata: Struct, side: str) -> dict[str, Value]:
    """`side`'s attributes (``source``/``destination``) from a proxy's node metadata; keys
    absent, empty or not strings are left out. ``LABELS`` may be a struct of strings or, as
    older proxies sent it, a JSON object in a string."""
    fields = metadata.fields
    out: dict[str, Value] = {}
    for key, suffixes in _PLAIN:
        text = _string(fields.get(key))
        if text:
            for suffix in suffixes:
                out[f"{side}.{suffix}"] = text
    labels = _labels(fields.get("LABELS"))
    if labels:
        out[f"{side}.labels"] = StringMap._adopt(labels)
    name, namespace = _string(fields.get("NAME")), _string(fields.get("NAMESPACE"))
    if name and namespace:
        out[f"{side}.uid"] = f"kubernetes://{name}.{namespace}"
    workload = _string(fields.get("WORKLOAD_NAME"))
    if workload and namespace:
        out[f"{side}.workload.uid"] = f"istio://{namespace}/workloads/{workload}"
    return out


def _string(value: StructValue | None) -> str:
    if value is None or value.WhichOneof("kind") != "string_value":
        return ""
    return value.string_value


def _labels(value: StructValue | None) -> dict[str, str]:
    if value is None:
        return {}
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {
            k: v.string_value
            for k, v in value.struct_value.fields.items()
            if v.WhichOneof("kind") == "string_value"
        }
    if kind == "string_value":
        try:
            parsed = json.loads(value.string_value)
        except ValueError:
            return {}
        if isinstance(parsed, Mapping):
            return {str(k): v for k, v in parsed.items() if isinstance(v, str)}
    return {}
