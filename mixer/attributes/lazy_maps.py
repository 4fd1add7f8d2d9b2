"""Mixer's ReportRequest with each entry's string maps left as wire bytes until read.

Istio's proxies report every request's headers as a string map, and Istio's standard metrics
read none of them. Parsing a map builds a protobuf map table per map, entry by entry; declaring
the maps' values `bytes` (the same wire form: a length-delimited field) leaves each one a bytes
object instead. The batch decoder (`mixer.attributes.compressed`) parses a map that some rule
reads when it reads it, once per distinct map of a batch, and never parses the others.

The messages are built at import from the generated descriptors of `istio.mixer.v1`, with only
`CompressedAttributes.string_maps`' value type changed, in the package ``mixer.lazy``.
Deliberate difference: a malformed map that no rule reads is not noticed (the generated classes
refuse the whole request), as a lazily parsed field is not checked until read.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from mixer.errors import MalformedMessage
from mixer.v1 import attributes_pb2, mixer_pb2

_PACKAGE = "mixer.lazy"


def _lazy_file() -> descriptor_pb2.FileDescriptorProto:
    """A file with copies of `CompressedAttributes` (string map values as bytes) and of
    `ReportRequest` (entries of that type)."""
    attributes = descriptor_pb2.FileDescriptorProto()
    attributes_pb2.DESCRIPTOR.CopyToProto(attributes)
    mixer = descriptor_pb2.FileDescriptorProto()
    mixer_pb2.DESCRIPTOR.CopyToProto(mixer)
    lazy = descriptor_pb2.FileDescriptorProto(
        name="mixer/lazy/report.proto",
        package=_PACKAGE,
        syntax=attributes.syntax,
        dependency=[d for d in attributes.dependency if d.startswith("google/protobuf/")],
    )
    source = ".istio.mixer.v1."
    for file, name in ((attributes, "CompressedAttributes"), (mixer, "ReportRequest")):
        (message,) = (m for m in file.message_type if m.name == name)
        lazy.message_type.add().CopyFrom(message)
    entries, request = lazy.message_type
    for field in entries.field:
        if field.type_name:
            field.type_name = field.type_name.replace(
                f"{source}CompressedAttributes.", f".{_PACKAGE}.CompressedAttributes."
            )
    (map_entry,) = (n for n in entries.nested_type if n.name == "StringMapsEntry")
    (value,) = (f for f in map_entry.field if f.name == "value")
    value.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    value.ClearField("type_name")
    for field in request.field:
        if field.type_name:
            field.type_name = field.type_name.replace(
                f"{source}CompressedAttributes", f".{_PACKAGE}.CompressedAttributes"
            ).replace(f"{source}ReportRequest.", f".{_PACKAGE}.ReportRequest.")
    return lazy


def _classes() -> tuple[Any, Any]:
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(_lazy_file().SerializeToString())
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ReportRequest")),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{_PACKAGE}.CompressedAttributes")
        ),
    )


LazyReportRequest, LazyCompressedAttributes = _classes()
"""`ReportRequest` and its entries' type, with string maps as bytes (same wire form)."""


def is_lazy(entry: Any) -> bool:
    """Whether `entry` (a CompressedAttributes) holds its string maps as bytes."""
    return entry.DESCRIPTOR is LazyCompressedAttributes.DESCRIPTOR


def full_entry(entry: Any, where: str) -> attributes_pb2.CompressedAttributes:
    """`entry` as the generated `CompressedAttributes` (every map parsed); `MalformedMessage`
    names `where` when one of its maps is not a valid `StringMap`."""
    try:
        return attributes_pb2.CompressedAttributes.FromString(entry.SerializeToString())
    except DecodeError as err:
        detail = " ".join(str(err).split())
        raise MalformedMessage(f"{where}.string_maps: cannot decode: {detail}") from None
