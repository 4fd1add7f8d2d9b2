"""Request classes that leave some submessages as wire bytes until they are read.

Istio's proxies report every request's headers as a string map, and Istio's standard metrics
read none of them; an access log carries addresses that no metric reads, and a TLS block that
repeats across a stream's entries. Parsing builds every one of those submessages. Declaring a
submessage field `bytes` (the same wire form: a length-delimited field) leaves it a bytes
object instead, which a reader parses when it needs it, or looks up by its bytes in a memo.

The classes are built at import from the generated descriptors, copied into the package
``mixer.lazy`` with only the listed fields' types changed:

- `LazyReportRequest`: `CompressedAttributes.string_maps` values are bytes (read by
  `mixer.attributes.compressed`);
- `LazyStreamAccessLogsMessage`: `AccessLogCommon`'s addresses and TLS block are bytes (read
  by `mixer.attributes.envoy`).

Deliberate difference: a malformed submessage that nothing reads is not noticed (the generated
classes refuse the whole request), as a lazily parsed protobuf field is not checked until read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import DecodeError

from mixer.envoy.data.accesslog.v3 import accesslog_pb2
from mixer.envoy.service.accesslog.v3 import als_pb2
from mixer.errors import MalformedMessage
from mixer.v1 import attributes_pb2, mixer_pb2

_PACKAGE = "mixer.lazy"
_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES


def _lazy_copy(
    name: str,
    messages: Sequence[tuple[FileDescriptor, str]],
    as_bytes: Mapping[str, Sequence[str]],
) -> Any:
    """Add a file `name` to the default pool with copies of `messages` (file, message name)
    in ``mixer.lazy``, references between them pointing at the copies, the fields
    `as_bytes[message]` (a message field each, or a map whose values are messages) declared
    `bytes`; returns the pool's descriptor of the file."""
    lazy = descriptor_pb2.FileDescriptorProto(name=name, package=_PACKAGE, syntax="proto3")
    copied: dict[str, str] = {}
    for file, message in messages:
        source = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(source)
        for dependency in (*source.dependency, source.name):
            if dependency not in lazy.dependency:
                lazy.dependency.append(dependency)
        (found,) = (m for m in source.message_type if m.name == message)
        lazy.message_type.add().CopyFrom(found)
        copied[f".{source.package}.{message}"] = f".{_PACKAGE}.{message}"
    own = {f.name for f, _ in messages}
    lazy.dependency[:] = [d for d in lazy.dependency if d not in own]

    def point_at_copies(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            for old, new in copied.items():
                if field.type_name == old or field.type_name.startswith(f"{old}."):
                    field.type_name = new + field.type_name[len(old) :]
                    break
        for nested in message.nested_type:
            point_at_copies(nested)

    for message_proto in lazy.message_type:
        point_at_copies(message_proto)
        for field_name in as_bytes.get(message_proto.name, ()):
            (field,) = (f for f in message_proto.field if f.name == field_name)
            entry_name = f"{field.type_name}"
            entry = next(
                (n for n in message_proto.nested_type if entry_name.endswith(f".{n.name}")), None
            )
            if entry is not None and entry.options.map_entry:  # a map: its values become bytes
                (field,) = (f for f in entry.field if f.name == "value")
            field.type = _BYTES
            field.ClearField("type_name")
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(lazy.SerializeToString())
    return pool.FindFileByName(name)


def _class(file: Any, message: str) -> Any:
    return message_factory.GetMessageClass(file.message_types_by_name[message])


_REPORT = _lazy_copy(
    "mixer/lazy/report.proto",
    [
        (attributes_pb2.DESCRIPTOR, "CompressedAttributes"),
        (mixer_pb2.DESCRIPTOR, "ReportRequest"),
    ],
    {"CompressedAttributes": ("string_maps",)},
)
LazyReportRequest = _class(_REPORT, "ReportRequest")
"""`ReportRequest` whose entries hold their string maps as wire bytes (same wire form)."""
LazyCompressedAttributes = _class(_REPORT, "CompressedAttributes")

_ALS = _lazy_copy(
    "mixer/lazy/als.proto",
    [
        (als_pb2.DESCRIPTOR, "StreamAccessLogsMessage"),
        (accesslog_pb2.DESCRIPTOR, "HTTPAccessLogEntry"),
        (accesslog_pb2.DESCRIPTOR, "TCPAccessLogEntry"),
        (accesslog_pb2.DESCRIPTOR, "AccessLogCommon"),
    ],
    {
        "AccessLogCommon": (
            "downstream_remote_address",
            "downstream_local_address",
            "downstream_direct_remote_address",
            "upstream_remote_address",
            "upstream_local_address",
            "tls_properties",
        )
    },
)
LazyStreamAccessLogsMessage = _class(_ALS, "StreamAccessLogsMessage")
"""`StreamAccessLogsMessage` whose entries hold their addresses and TLS block as wire bytes."""


def is_lazy(entry: Any) -> bool:
    """Whether `entry` (a CompressedAttributes) holds its string maps as bytes."""
    return entry.DESCRIPTOR is LazyCompressedAttributes.DESCRIPTOR


def full_entry(entry: Any, where: str) -> attributes_pb2.CompressedAttributes:
    """`entry` as the generated `CompressedAttributes` (every map parsed); `MalformedMessage`
    names `where` when one of its maps is not a valid `StringMap`."""
    try:
        return attributes_pb2.CompressedAttributes.FromString(entry.SerializeToString())
    except DecodeError as err:
        raise MalformedMessage(f"{where}.string_maps: cannot decode: {_one_line(err)}") from None


def parse(message_type: Any, wire: bytes, where: str) -> Any:
    """`message_type` parsed from `wire`, a field left as bytes; `MalformedMessage` names
    `where` when it is not valid."""
    try:
        return message_type.FromString(wire)
    except DecodeError as err:
        raise MalformedMessage(f"{where}: cannot decode: {_one_line(err)}") from None


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
