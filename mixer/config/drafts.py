"""What the first phase of loading produces: parsed resources ("drafts") and their parts.

Drafts still hold unresolved references and expression texts with their document paths;
`mixer.config.validate` resolves and compiles them into the model of `mixer.config.model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mixer.config import names
from mixer.config.fields import Scope, describe
from mixer.config.model import HeaderOperation, Location, RateLimitSampling
from mixer.config.source import Document, Path_


@dataclass(frozen=True)
class Header:
    """What every Mixer resource has: where it is, its kind, name, namespace and annotations."""

    doc: Document
    kind: str
    name: str
    namespace: str
    annotations: Mapping[str, str]

    @property
    def label(self) -> str:
        """``kind/name``, as problems name a resource."""
        return f"{self.kind}/{self.name}"

    @property
    def fqn(self) -> str:
        """``name.kind.namespace``."""
        return names.fqn(self.name, self.kind, self.namespace)

    @property
    def location(self) -> Location:
        """Where the resource's document starts."""
        return Location(self.doc.path, self.doc.line)


@dataclass(frozen=True)
class ExprText:
    """An expression as written, with its path in the document (for error lines)."""

    text: str
    path: Path_


RawField = ExprText | dict[str, "RawField"]
"""An instance field: one expression, or (map and message fields) nested fields by name."""


@dataclass
class Draft:
    """A parsed resource. `usable` is false when it cannot be checked any further: its problem
    (already reported) left too little to go on, e.g. an adapter that is not supported."""

    header: Header
    usable: bool


@dataclass
class HandlerDraft(Draft):
    """A handler: its adapter and params as written (`params_path` locates them)."""

    adapter: str = ""
    params: Any = None
    params_path: Path_ = ()


@dataclass
class InstanceDraft(Draft):
    """An instance: its template, field expressions and dialect."""

    template: str = ""
    fields: dict[str, RawField] = field(default_factory=dict)
    attribute_bindings: dict[str, ExprText] = field(default_factory=dict)
    dialect: str = "mixer"


@dataclass(frozen=True)
class ActionDraft:
    """A rule action with its references as written, each with its document path."""

    handler: str
    instances: tuple[tuple[str, Path_], ...]
    name: str
    path: Path_


@dataclass(frozen=True)
class HeaderOpDraft:
    """A rule header operation with its value expressions."""

    name: str
    values: tuple[ExprText, ...]
    operation: HeaderOperation


@dataclass(frozen=True)
class RandomSamplingDraft:
    """A rule's random sampling before its attribute expression is compiled."""

    numerator: int
    denominator: int
    attribute_expression: ExprText | None
    use_independent_randomness: bool


@dataclass(frozen=True)
class SamplingDraft:
    """A rule's sampling settings."""

    random: RandomSamplingDraft | None = None
    rate_limit: RateLimitSampling | None = None


@dataclass
class RuleDraft(Draft):
    """A rule: match, actions, header operations and sampling, unresolved and uncompiled."""

    match: ExprText | None = None
    actions: list[ActionDraft] = field(default_factory=list)
    request_header_operations: list[HeaderOpDraft] = field(default_factory=list)
    response_header_operations: list[HeaderOpDraft] = field(default_factory=list)
    sampling: SamplingDraft | None = None
    dialect: str = "mixer"


def expression(scope: Scope, value: Any, path: Path_) -> ExprText | None:
    """An expression leaf. YAML numbers and booleans stand for the same literal in an expression."""
    if isinstance(value, bool):
        return ExprText(str(value).lower(), path)
    if isinstance(value, int | float):
        return ExprText(str(value), path)
    if isinstance(value, str):
        if not value.strip():
            scope.error(path, "empty expression")
            return None
        return ExprText(value, path)
    scope.error(path, f"expected an expression string, got {describe(value)}")
    return None
