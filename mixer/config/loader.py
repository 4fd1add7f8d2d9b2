"""First phase of loading: config files -> parsed resources ("drafts"), shape and keys checked.

Each YAML document is either a Mixer resource (``apiVersion: config.istio.io/...``), an
envoyproxy/ratelimit config (a top-level ``domain``), a Kubernetes resource of another API group
(skipped with a note) or an error. Drafts still hold unresolved references and uncompiled
expressions; `mixer.config.validate` checks those against each other and builds the snapshot.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.base import AdapterInfo
from mixer.config import names, source
from mixer.config.cache import ConfigCache
from mixer.config.drafts import (
    ExprText,
    HandlerDraft,
    Header,
    InstanceDraft,
    RawField,
    RuleDraft,
    expression,
)
from mixer.config.fields import Scope, describe, fields, get_str, get_str_map
from mixer.config.model import AttributeManifest, QuotaSpec, QuotaSpecBinding, RateLimitConfig
from mixer.config.names import snake
from mixer.config.problems import ConfigProblem
from mixer.config.ratelimit import parse_ratelimit
from mixer.config.rules import parse_rule
from mixer.config.source import Document, Path_, config_files, read_documents
from mixer.config.specs import parse_binding, parse_manifest, parse_quota_spec
from mixer.templates import TEMPLATES, Template, Variety

# Templates whose fields are messages rather than expressions: their sub-fields by type.
MESSAGE_FIELDS: Mapping[str, Mapping[str, str]] = {
    "SUBJECT": {"user": "STRING", "groups": "STRING", "properties": "MAP_VALUE"},
    "ACTION": {
        "namespace": "STRING",
        "service": "STRING",
        "method": "STRING",
        "path": "STRING",
        "properties": "MAP_VALUE",
    },
}

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DOCUMENT_KEYS = ("apiVersion", "kind", "metadata", "spec")
# What `kubectl get -o yaml` adds to metadata besides name/namespace/labels/annotations.
_METADATA_KEYS = (
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
)


@dataclass
class Parsed:
    """Everything the first phase found in a directory."""

    handlers: list[HandlerDraft] = field(default_factory=list)
    instances: list[InstanceDraft] = field(default_factory=list)
    rules: list[RuleDraft] = field(default_factory=list)
    manifests: list[tuple[Header, AttributeManifest]] = field(default_factory=list)
    quota_specs: list[tuple[Header, QuotaSpec]] = field(default_factory=list)
    bindings: list[tuple[Header, QuotaSpecBinding, tuple[Path_, ...]]] = field(default_factory=list)
    """Bindings with the path of each of their quotaSpecs references."""
    ratelimits: list[tuple[Document, RateLimitConfig]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)
    files: int = 0

    def extend(self, other: Parsed) -> None:
        """Append everything `other` found (its files included), as if parsed after this."""
        self.handlers.extend(other.handlers)
        self.instances.extend(other.instances)
        self.rules.extend(other.rules)
        self.manifests.extend(other.manifests)
        self.quota_specs.extend(other.quota_specs)
        self.bindings.extend(other.bindings)
        self.ratelimits.extend(other.ratelimits)
        self.notes.extend(other.notes)
        self.problems.extend(other.problems)
        self.files += other.files


def parse_directory(
    directory: Path,
    adapters: Mapping[str, AdapterInfo],
    default_namespace: str,
    cache: ConfigCache | None = None,
) -> Parsed:
    """Read and parse every config file under `directory` (recursively, in sorted order);
    with a `cache`, files parsed before with the same content are not parsed again."""
    return parse_files(
        ((file, str(directory / file.relative_to(directory))) for file in config_files(directory)),
        adapters,
        default_namespace,
        cache,
    )


def parse_files(
    files: Iterable[tuple[Path, str]],
    adapters: Mapping[str, AdapterInfo],
    default_namespace: str,
    cache: ConfigCache | None = None,
) -> Parsed:
    """Read and parse `files`, given as (path, name shown in messages); `cache` as in
    `parse_directory`."""
    parser = _Parser(adapters, default_namespace)
    for file, shown_as in files:
        parser.out.files += 1
        if cache is not None:
            context = (source.max_nodes(), adapters, default_namespace)
            found = cache.file(
                file,
                shown_as,
                context,
                functools.partial(_parse_text, shown_as, adapters, default_namespace),
            )
            if found is not None:
                parser.out.extend(found)
                continue
        documents, problems = read_documents(file, shown_as)
        parser.out.problems.extend(problems)
        for doc in documents:
            parser.document(doc)
    return parser.out


def _parse_text(
    shown_as: str, adapters: Mapping[str, AdapterInfo], default_namespace: str, text: str
) -> Parsed:
    """What `parse_files` finds in one file of text `text` (its `files` count left at 0)."""
    parser = _Parser(adapters, default_namespace)
    documents, problems = source.parse_documents(text, shown_as, source.max_nodes())
    parser.out.problems.extend(problems)
    for doc in documents:
        parser.document(doc)
    return parser.out


class _Parser:
    def __init__(self, adapters: Mapping[str, AdapterInfo], default_namespace: str) -> None:
        self.adapters = adapters
        self.default_namespace = default_namespace
        self.out = Parsed()

    def _problem(self, doc: Document, message: str) -> None:
        self.out.problems.append(ConfigProblem(doc.path, doc.line, "", "", message))

    def document(self, doc: Document) -> None:
        data = doc.data
        if not isinstance(data, dict):
            self._problem(
                doc,
                "not a config resource: expected a mapping with apiVersion, kind, metadata and "
                f"spec, got {describe(data)}",
            )
            return
        if "kind" not in data:
            if "domain" in data:
                domain = data.get("domain")
                scope = Scope(self.out.problems, doc, f"ratelimit/{domain or '?'}")
                scope.check_duplicates()
                self.out.ratelimits.append((doc, parse_ratelimit(scope, data)))
                return
            self._problem(
                doc,
                "not a config resource: no 'kind' (nor a top-level 'domain', for a rate-limit "
                "config)",
            )
            return
        kind = data["kind"]
        metadata = data.get("metadata")
        raw_name = metadata.get("name") if isinstance(metadata, dict) else None
        label = f"{kind}/{raw_name if isinstance(raw_name, str) else '?'}"
        scope = Scope(self.out.problems, doc, label)
        if not isinstance(kind, str) or not kind:
            scope.error(("kind",), f"expected a kind name, got {describe(kind)}")
            return
        api_version = data.get("apiVersion")
        if api_version is None:
            scope.error(("apiVersion",), "missing (expected config.istio.io/v1alpha2)")
            return
        if not isinstance(api_version, str):
            scope.error(("apiVersion",), f"expected a string, got {describe(api_version)}")
            return
        group = api_version.split("/")[0] if "/" in api_version else ""
        if group != names.CONFIG_GROUP:
            self._note(doc, label, f"apiVersion {api_version} is not Mixer config")
            return
        if kind in names.CLIENT_KINDS:
            self._note(doc, label, "client-side config for the proxy, not for Mixer")
            return
        scope.check_duplicates()
        for key in data:
            if key not in _DOCUMENT_KEYS:
                scope.error(
                    (str(key),), f"unknown key {key!r} (accepted: {', '.join(_DOCUMENT_KEYS)})"
                )
        header = self._header(scope, kind, metadata)
        if header is None:
            return
        spec = data.get("spec")
        spec_path: Path_ = ("spec",)
        if kind == names.HANDLER:
            self.out.handlers.append(self._handler(scope, header, spec))
        elif kind == names.INSTANCE:
            self.out.instances.append(self._instance(scope, header, spec))
        elif kind == names.RULE:
            self.out.rules.append(parse_rule(scope, header, spec, self._dialect(scope, header)))
        elif kind == names.ATTRIBUTE_MANIFEST:
            # Kept even with problems (which stop the snapshot anyway): what is valid in it
            # still counts, so that nothing else is reported as missing because of it.
            self.out.manifests.append((header, parse_manifest(scope, header, spec)))
        elif kind == names.QUOTA_SPEC:
            self.out.quota_specs.append((header, parse_quota_spec(scope, header, spec)))
        elif kind == names.QUOTA_SPEC_BINDING:
            binding, paths = parse_binding(scope, header, spec)
            self.out.bindings.append((header, binding, paths))
        elif kind in names.OUT_OF_PROCESS_KINDS:
            scope.error(("kind",), f"kind {kind!r} is not supported (out-of-process {kind}s)")
        elif kind in TEMPLATES:
            self.out.instances.append(self._legacy_instance(scope, header, spec, spec_path))
        elif kind in self.adapters:
            draft = HandlerDraft(header, True, kind, {} if spec is None else spec, spec_path)
            if not isinstance(draft.params, dict):
                scope.error(spec_path, f"expected a mapping, got {describe(draft.params)}")
                draft.usable = False
            self.out.handlers.append(draft)
        elif kind in names.KNOWN_ISTIO_ADAPTERS:
            scope.error(("kind",), f"adapter {kind!r} is not supported")
            self.out.handlers.append(HandlerDraft(header, False, kind))
        elif kind in names.KNOWN_ISTIO_TEMPLATES:
            scope.error(("kind",), f"template {kind!r} is not supported")
            self.out.instances.append(InstanceDraft(header, False, kind))
        else:
            known = ", ".join(names.MIXER_KINDS)
            scope.error(
                ("kind",),
                f"unknown kind {kind!r} (expected {known}, or an adapter or template name)",
            )

    def _note(self, doc: Document, label: str, why: str) -> None:
        self.out.notes.append(str(ConfigProblem(doc.path, doc.line, label, "", f"ignored: {why}")))

    def _header(self, scope: Scope, kind: str, metadata: Any) -> Header | None:
        meta = fields(scope, metadata, ("metadata",), _METADATA_KEYS)
        if metadata is None:
            scope.error(("metadata",), "missing")
        name = get_str(scope, meta, "name", required=metadata is not None)
        namespace = get_str(scope, meta, "namespace") or self.default_namespace
        annotations = get_str_map(scope, meta, "annotations")
        get_str_map(scope, meta, "labels")
        for key, value in (("name", name), ("namespace", namespace)):
            if value and not _DNS_LABEL.fullmatch(value):
                scope.error(
                    meta.path(key),
                    f"{value!r} is not a valid {key} (lower-case letters, digits and '-')",
                )
        if scope.errors:
            return None
        return Header(scope.doc, kind, name, namespace, annotations)

    def _dialect(self, scope: Scope, header: Header) -> str:
        try:
            return names.dialect_for(header.annotations)
        except ValueError as err:
            scope.error(("metadata", "annotations", names.LANG_ANNOTATION), str(err))
            return "mixer"

    # -- handlers -----------------------------------------------------------------------------

    def _handler(self, scope: Scope, header: Header, spec: Any) -> HandlerDraft:
        spec_fields = fields(
            scope, spec, ("spec",), ("compiledAdapter", "adapter", "params", "connection")
        )
        compiled = get_str(scope, spec_fields, "compiled_adapter")
        named = get_str(scope, spec_fields, "adapter")
        adapter = compiled or named
        params = spec_fields.get("params")
        draft = HandlerDraft(
            header, False, adapter, {} if params is None else params, spec_fields.path("params")
        )
        if compiled and named and compiled != named:
            scope.error(
                spec_fields.path("adapter"),
                f"{named!r} disagrees with compiledAdapter {compiled!r}",
            )
        if "connection" in spec_fields:
            scope.error(
                spec_fields.path("connection"),
                f"adapter {adapter!r} is not supported: out-of-process adapters are not supported",
            )
            return draft
        if not adapter:
            if not scope.errors:
                scope.error(spec_fields.path("compiled_adapter"), "missing")
            return draft
        if adapter not in self.adapters:
            key = "compiled_adapter" if compiled else "adapter"
            scope.error(spec_fields.path(key), f"adapter {adapter!r} is not supported")
            return draft
        if not isinstance(draft.params, dict):
            scope.error(draft.params_path, f"expected a mapping, got {describe(draft.params)}")
            return draft
        draft.usable = True
        return draft

    # -- instances ----------------------------------------------------------------------------

    def _instance(self, scope: Scope, header: Header, spec: Any) -> InstanceDraft:
        spec_fields = fields(
            scope, spec, ("spec",), ("compiledTemplate", "template", "params", "attributeBindings")
        )
        compiled = get_str(scope, spec_fields, "compiled_template")
        named = get_str(scope, spec_fields, "template")
        template_name = compiled or named
        draft = InstanceDraft(header, False, template_name, dialect=self._dialect(scope, header))
        if compiled and named and compiled != named:
            scope.error(
                spec_fields.path("template"),
                f"{named!r} disagrees with compiledTemplate {compiled!r}",
            )
        if not template_name:
            if not scope.errors:
                scope.error(spec_fields.path("compiled_template"), "missing")
            return draft
        template = TEMPLATES.get(template_name)
        if template is None:
            key = "compiled_template" if compiled else "template"
            scope.error(spec_fields.path(key), f"template {template_name!r} is not supported")
            return draft
        draft.fields = _template_fields(
            scope, template, spec_fields.get("params"), spec_fields.path("params")
        )
        draft.attribute_bindings = _bindings(
            scope,
            template,
            spec_fields.get("attribute_bindings"),
            spec_fields.path("attribute_bindings"),
        )
        draft.usable = True
        return draft

    def _legacy_instance(
        self, scope: Scope, header: Header, spec: Any, path: Path_
    ) -> InstanceDraft:
        template = TEMPLATES[header.kind]
        draft = InstanceDraft(header, False, template.name, dialect=self._dialect(scope, header))
        params: Any = spec
        if isinstance(spec, dict):
            params = {}
            for key, value in spec.items():
                if snake(str(key)) == "attribute_bindings":
                    draft.attribute_bindings = _bindings(scope, template, value, (*path, key))
                else:
                    params[key] = value
        draft.fields = _template_fields(scope, template, params, path)
        draft.usable = True
        return draft


def _template_fields(
    scope: Scope, template: Template, params: Any, path: Path_
) -> dict[str, RawField]:
    return _message_fields(scope, template.name, dict(template.fields), params, path)


def _message_fields(
    scope: Scope, owner: str, schema: Mapping[str, str], params: Any, path: Path_
) -> dict[str, RawField]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        scope.error(path, f"expected a mapping, got {describe(params)}")
        return {}
    result: dict[str, RawField] = {}
    written: dict[str, str] = {}
    for key, value in params.items():
        name = snake(str(key))
        field_path = (*path, str(key))
        field_type = schema.get(name)
        if field_type is None:
            listing = ", ".join(sorted(schema))
            known = f"fields: {listing}" if listing else f"{owner} has no fields"
            scope.error(field_path, f"unknown field {str(key)!r} of {owner} ({known})")
            continue
        if name in written:
            scope.error(field_path, f"{key!r} repeats {written[name]!r}")
            continue
        written[name] = str(key)
        if field_type == "MAP_VALUE":
            result[name] = _map_field(scope, value, field_path)
        elif field_type in MESSAGE_FIELDS:
            result[name] = _message_fields(
                scope, f"{owner}.{name}", MESSAGE_FIELDS[field_type], value, field_path
            )
        else:
            leaf = expression(scope, value, field_path)
            if leaf is not None:
                result[name] = leaf
    return result


def _map_field(scope: Scope, value: Any, path: Path_) -> dict[str, RawField]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        scope.error(path, f"expected a mapping of names to expressions, got {describe(value)}")
        return {}
    result: dict[str, RawField] = {}
    for key, item in value.items():
        leaf = expression(scope, item, (*path, str(key)))
        if leaf is not None:
            result[str(key)] = leaf
    return result


def _bindings(scope: Scope, template: Template, value: Any, path: Path_) -> dict[str, ExprText]:
    if value is None:
        return {}
    if template.variety is not Variety.ATTRIBUTE_GENERATOR:
        scope.error(path, f"template {template.name} does not generate attributes")
        return {}
    if not isinstance(value, dict):
        scope.error(path, f"expected a mapping of attributes to expressions, got {describe(value)}")
        return {}
    result: dict[str, ExprText] = {}
    for key, item in value.items():
        leaf = expression(scope, item, (*path, str(key)))
        if leaf is not None:
            result[str(key)] = leaf
    return result
