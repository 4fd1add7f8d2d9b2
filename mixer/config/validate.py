"""Second phase of loading: check resources against each other and build the `Snapshot`.

Compiles every expression against the attribute vocabulary, parses handler params with their
adapter (no I/O), resolves rule references and checks that each handler can take the instances sent
to it. All problems are collected; a resource whose own problem was already reported is not
reported again where it is referenced (so one unsupported adapter gives one message).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from adapters.base import AdapterInfo, ParamError
from mixer.config import names
from mixer.config.cache import ConfigCache
from mixer.config.drafts import (
    ExprText,
    Header,
    HeaderOpDraft,
    InstanceDraft,
    RawField,
    RuleDraft,
)
from mixer.config.fields import Scope
from mixer.config.loader import MESSAGE_FIELDS, Parsed, parse_directory, parse_files
from mixer.config.model import (
    ActionSpec,
    FieldExpr,
    FieldProgram,
    HandlerSpec,
    HeaderOperationSpec,
    InstanceSpec,
    RandomSampling,
    RateLimitConfig,
    RateLimitDescriptor,
    RuleSpec,
    Sampling,
    Snapshot,
    freeze,
    thaw,
)
from mixer.config.names import DEFAULT_NAMESPACE, NameIndex, snake
from mixer.config.problems import ConfigProblem
from mixer.config.source import Path_
from mixer.errors import ConfigError
from mixer.expr import CEL_LIBRARIES, CompileError, Program
from mixer.expr import compile as compile_expression
from mixer.templates import TEMPLATES, Template, output_prefix

DEFAULT_ATTRIBUTES = "default_attributes.yaml"
"""Package data: Istio 1.4's attribute manifests, the vocabulary of a directory without any."""

_ANY_TYPE = ("VALUE", "MAP_VALUE")
# `$out.` in an attribute binding: the handler's output (Mixer rewrote it the same way).
_OUT_REF = re.compile(r"\$out\.([A-Za-z_][A-Za-z0-9_]*)")
_PARAM_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class ConfigReport:
    """The outcome of checking a directory: the snapshot when there are no problems."""

    snapshot: Snapshot | None
    problems: tuple[ConfigProblem, ...]
    notes: tuple[str, ...]
    """Documents skipped on purpose (e.g. a Kubernetes Service), as ``path:line: ...`` lines."""


def check_config(
    directory: Path,
    adapters: Mapping[str, AdapterInfo],
    *,
    default_namespace: str = DEFAULT_NAMESPACE,
    cel_libraries: Iterable[str] | None = None,
    merge_ratelimit_domains: bool = False,
    cache: ConfigCache | None = None,
) -> ConfigReport:
    """Load and validate every config file under `directory`, collecting all problems.

    `cel_libraries` names the CEL extension libraries CEL expressions may use (None: all of
    `mixer.expr.CEL_LIBRARIES`); a call into another one is a problem naming its library.
    An unknown library name raises `mixer.expr.CompileError` before anything is read.
    With `merge_ratelimit_domains`, rate-limit files of one domain are merged (their top-level
    descriptors joined, in file order) as envoyproxy/ratelimit's ``MERGE_DOMAIN_CONFIG`` does;
    otherwise a domain in two files is an error.

    A `cache` (`mixer.config.cache.ConfigCache`) kept from one call to the next makes a call
    re-parse only changed files and compile only new expressions; the report is the same.
    """
    libraries = CEL_LIBRARIES if cel_libraries is None else tuple(cel_libraries)
    compile_expression("true", dialect="cel", libraries=libraries)  # rejects unknown names
    if not directory.is_dir():
        problem = ConfigProblem(str(directory), 0, "", "", "not a directory")
        return ConfigReport(None, (problem,), ())
    parsed = parse_directory(directory, adapters, default_namespace, cache)
    validator = _Validator(parsed, adapters, str(directory), default_namespace, libraries)
    validator.merge_ratelimit_domains = merge_ratelimit_domains
    validator.cache = cache
    report = validator.run()
    if cache is not None:
        cache.sweep()
    return report


def validate_directory(
    directory: Path,
    adapters: Mapping[str, AdapterInfo],
    *,
    default_namespace: str = DEFAULT_NAMESPACE,
    cel_libraries: Iterable[str] | None = None,
    merge_ratelimit_domains: bool = False,
) -> list[ConfigProblem]:
    """Every problem of the config under `directory` (empty when it is valid); `cel_libraries`
    and `merge_ratelimit_domains` as in `check_config`."""
    report = check_config(
        directory,
        adapters,
        default_namespace=default_namespace,
        cel_libraries=cel_libraries,
        merge_ratelimit_domains=merge_ratelimit_domains,
    )
    return list(report.problems)


def load_config(
    directory: Path,
    adapters: Mapping[str, AdapterInfo],
    *,
    default_namespace: str = DEFAULT_NAMESPACE,
    cel_libraries: Iterable[str] | None = None,
    merge_ratelimit_domains: bool = False,
    cache: ConfigCache | None = None,
) -> Snapshot:
    """The validated config under `directory`; raises ConfigError listing every problem.
    `cel_libraries`, `merge_ratelimit_domains` and `cache` as in `check_config`."""
    report = check_config(
        directory,
        adapters,
        default_namespace=default_namespace,
        cel_libraries=cel_libraries,
        merge_ratelimit_domains=merge_ratelimit_domains,
        cache=cache,
    )
    if report.snapshot is None:
        raise ConfigError([str(problem) for problem in report.problems])
    return report.snapshot


@functools.cache
def default_vocabulary() -> Mapping[str, str]:
    """Istio 1.4's attribute vocabulary (attribute name -> ValueType name), from package data."""
    resource = importlib.resources.files("mixer.config").joinpath(DEFAULT_ATTRIBUTES)
    with importlib.resources.as_file(resource) as path:
        parsed = parse_files([(path, DEFAULT_ATTRIBUTES)], {}, DEFAULT_NAMESPACE)
    if parsed.problems or not parsed.manifests:
        listing = "; ".join(str(problem) for problem in parsed.problems)
        raise RuntimeError(f"the packaged {DEFAULT_ATTRIBUTES} is broken: {listing}")
    vocabulary: dict[str, str] = {}
    for _, manifest in parsed.manifests:
        for name, info in manifest.attributes.items():
            vocabulary[name] = info.value_type
    return MappingProxyType(vocabulary)


class _Validator:
    def __init__(
        self,
        parsed: Parsed,
        adapters: Mapping[str, AdapterInfo],
        directory: str,
        default_namespace: str,
        cel_libraries: tuple[str, ...],
    ) -> None:
        self.parsed = parsed
        self.cel_libraries = cel_libraries
        self.adapters = adapters
        self.directory = directory
        self.default_namespace = default_namespace
        self.problems: list[ConfigProblem] = list(parsed.problems)
        self.vocabulary: Mapping[str, str] = {}
        self.handlers: dict[str, HandlerSpec] = {}
        self.instances: dict[str, InstanceSpec] = {}
        self._compiled: dict[tuple[str, str], Program | CompileError] = {}
        self.cache: ConfigCache | None = None
        self._declared: dict[str, Header] = {}
        self.merge_ratelimit_domains = False
        self._ratelimit_configs: list[RateLimitConfig] = []

    def scope(self, header: Header) -> Scope:
        return Scope(self.problems, header.doc, header.label)

    def run(self) -> ConfigReport:
        self._vocabulary()
        self._handlers()
        self._instances()
        rules = self._rules()
        self._bindings()
        self._ratelimits()
        notes = list(self.parsed.notes)
        if not self.parsed.files:
            notes.append(f"{self.directory}: no *.yaml or *.yml files")
        if self.problems:
            # By file and line, so the list reads like the files; ties keep the order found.
            problems = sorted(self.problems, key=lambda problem: (problem.path, problem.line))
            return ConfigReport(None, tuple(problems), tuple(notes))
        snapshot = Snapshot(
            directory=self.directory,
            handlers=MappingProxyType(self.handlers),
            instances=MappingProxyType(self.instances),
            rules=tuple(rules),
            attribute_manifests=tuple(manifest for _, manifest in self.parsed.manifests),
            vocabulary=self.vocabulary,
            quota_specs=tuple(spec for _, spec in self.parsed.quota_specs),
            quota_spec_bindings=tuple(binding for _, binding, _ in self.parsed.bindings),
            rate_limit_configs=tuple(self._ratelimit_configs),
            default_namespace=self.default_namespace,
            notes=tuple(notes),
        )
        return ConfigReport(snapshot, (), tuple(notes))

    def _unique(self, header: Header, full_name: str) -> bool:
        """False (and a problem) if `full_name` was declared before."""
        first = self._declared.get(full_name)
        if first is None:
            self._declared[full_name] = header
            return True
        self.scope(header).error(
            ("metadata", "name"), f"{full_name} is already defined at {first.location}"
        )
        return False

    # -- vocabulary ---------------------------------------------------------------------------

    def _vocabulary(self) -> None:
        if not self.parsed.manifests:
            self.vocabulary = default_vocabulary()
            return
        vocabulary: dict[str, str] = {}
        owners: dict[str, Header] = {}
        for header, manifest in self.parsed.manifests:
            self._unique(header, header.fqn)
            for name, info in manifest.attributes.items():
                owner = owners.get(name)
                if owner is not None:
                    self.scope(header).error(
                        ("spec", "attributes", name),
                        f"attribute {name!r} is already declared by {owner.label} "
                        f"at {owner.location}",
                    )
                    continue
                owners[name] = header
                vocabulary[name] = info.value_type
        self.vocabulary = MappingProxyType(vocabulary)

    # -- handlers -----------------------------------------------------------------------------

    def _handlers(self) -> None:
        for draft in self.parsed.handlers:
            header = draft.header
            if not self._unique(header, header.fqn) or not draft.usable:
                continue
            info = self.adapters[draft.adapter]
            scope = self.scope(header)
            try:
                adapter_params = info.parse_params(thaw(draft.params))
            except ParamError as err:
                path = _param_path(draft.params, draft.params_path, err.path)
                scope.error(path, err.message)
                continue
            except Exception as err:  # a plugin's parser failing is a config problem too
                scope.error(
                    draft.params_path,
                    f"adapter {draft.adapter!r} cannot parse these params: "
                    f"{type(err).__name__}: {err}",
                )
                continue
            self.handlers[header.fqn] = HandlerSpec(
                name=header.fqn,
                short_name=header.name,
                namespace=header.namespace,
                kind=header.kind,
                adapter=draft.adapter,
                params=freeze(draft.params),
                adapter_params=adapter_params,
                source=header.location,
            )

    # -- instances ----------------------------------------------------------------------------

    def _instances(self) -> None:
        for draft in self.parsed.instances:
            header = draft.header
            if not self._unique(header, header.fqn) or not draft.usable:
                continue
            spec = self._instance(draft)
            if spec is not None:
                self.instances[header.fqn] = spec

    def _instance(self, draft: InstanceDraft) -> InstanceSpec | None:
        header = draft.header
        scope = self.scope(header)
        template = TEMPLATES[draft.template]
        texts, programs = self._fields(
            scope, draft.fields, template.fields, draft.dialect, template.name
        )
        bindings: dict[str, Program] = {}
        for attribute, binding in draft.attribute_bindings.items():
            if attribute not in self.vocabulary:
                scope.error(binding.path, f"unknown attribute {attribute!r}")
                continue
            program = self._binding(scope, template, binding, draft.dialect)
            if program is not None:
                self._check_type(
                    scope, binding, program, self.vocabulary[attribute], f"attribute {attribute}"
                )
                bindings[attribute] = program
        if scope.errors:
            return None
        return InstanceSpec(
            name=header.fqn,
            short_name=header.name,
            namespace=header.namespace,
            kind=header.kind,
            template=template.name,
            params=freeze(texts),
            programs=freeze(programs),
            dialect=draft.dialect,
            source=header.location,
            attribute_bindings=MappingProxyType(
                {name: binding.text for name, binding in draft.attribute_bindings.items()}
            ),
            binding_programs=MappingProxyType(bindings),
        )

    def _fields(
        self,
        scope: Scope,
        raw: Mapping[str, RawField],
        schema: Mapping[str, str],
        dialect: str,
        owner: str,
    ) -> tuple[dict[str, FieldExpr], dict[str, FieldProgram]]:
        texts: dict[str, FieldExpr] = {}
        programs: dict[str, FieldProgram] = {}
        for name, value in raw.items():
            field_type = schema[name]
            if isinstance(value, ExprText):
                program = self._compile(scope, value, dialect)
                if program is not None:
                    self._check_type(scope, value, program, field_type, f"{owner}.{name}")
                    texts[name], programs[name] = value.text, program
            elif field_type in MESSAGE_FIELDS:
                texts[name], programs[name] = self._fields(
                    scope, value, MESSAGE_FIELDS[field_type], dialect, f"{owner}.{name}"
                )
            else:
                entries: dict[str, FieldExpr] = {}
                compiled: dict[str, FieldProgram] = {}
                for key, leaf in value.items():
                    assert isinstance(leaf, ExprText)  # map fields hold expressions only
                    program = self._compile(scope, leaf, dialect)
                    if program is not None:
                        entries[key], compiled[key] = leaf.text, program
                texts[name], programs[name] = entries, compiled
        return texts, programs

    def _check_type(
        self, scope: Scope, expr: ExprText, program: Program, wanted: str, what: str
    ) -> None:
        got = program.result_type
        if wanted in _ANY_TYPE or got == "DYNAMIC" or got == wanted:
            return
        scope.error(expr.path, f"expression {expr.text!r} has type {got}, but {what} is {wanted}")

    def _binding(
        self, scope: Scope, template: Template, expr: ExprText, dialect: str
    ) -> Program | None:
        """An attribute binding, compiled with ``$out.<field>`` read as the output attribute
        (`mixer.templates.output_prefix`) typed by the template's output field."""
        prefix = output_prefix(template.name)
        unknown = sorted({m.group(1) for m in _OUT_REF.finditer(expr.text)} - set(template.outputs))
        if unknown:
            scope.error(
                expr.path,
                f"template {template.name} has no output field {unknown[0]!r} "
                f"in expression {expr.text!r}",
            )
            return None
        text = _OUT_REF.sub(lambda m: prefix + m.group(1), expr.text)
        vocabulary = {
            **self.vocabulary,
            **{prefix + name: kind for name, kind in template.outputs.items()},
        }
        if self.cache is not None:
            result = self.cache.program(
                text,
                dialect,
                vocabulary,
                ("binding",),
                lambda: compile_expression(text, dialect=dialect, vocabulary=vocabulary),
            )
            if isinstance(result, CompileError):
                scope.error(expr.path, f"{result} in expression {expr.text!r}")
                return None
            return result
        try:
            return compile_expression(text, dialect=dialect, vocabulary=vocabulary)
        except CompileError as err:
            scope.error(expr.path, f"{err} in expression {expr.text!r}")
            return None

    def _compile(self, scope: Scope, expr: ExprText, dialect: str) -> Program | None:
        key = (expr.text, dialect)
        result = self._compiled.get(key)
        if result is None:
            if self.cache is not None:
                vocabulary, libraries = self.vocabulary, self.cel_libraries
                result = self.cache.program(
                    expr.text,
                    dialect,
                    vocabulary,
                    libraries,
                    lambda: compile_expression(
                        expr.text, dialect=dialect, vocabulary=vocabulary, libraries=libraries
                    ),
                )
            else:
                try:
                    result = compile_expression(
                        expr.text,
                        dialect=dialect,
                        vocabulary=self.vocabulary,
                        libraries=self.cel_libraries,
                    )
                except CompileError as err:
                    result = err
            self._compiled[key] = result
        if isinstance(result, CompileError):
            scope.error(expr.path, f"{result} in expression {expr.text!r}")
            return None
        return result

    # -- rules --------------------------------------------------------------------------------

    def _rules(self) -> list[RuleSpec]:
        handler_index = NameIndex(names.HANDLER, self._declared_of(self.parsed.handlers))
        instance_index = NameIndex(names.INSTANCE, self._declared_of(self.parsed.instances))
        rules: list[RuleSpec] = []
        for draft in self.parsed.rules:
            if not self._unique(draft.header, draft.header.fqn) or not draft.usable:
                continue
            rule = self._rule(draft, handler_index, instance_index)
            if rule is not None:
                rules.append(rule)
        return rules

    @staticmethod
    def _declared_of(drafts: list[Any]) -> list[tuple[str, str, str]]:
        return [(d.header.name, d.header.kind, d.header.namespace) for d in drafts]

    def _rule(
        self, draft: RuleDraft, handler_index: NameIndex, instance_index: NameIndex
    ) -> RuleSpec | None:
        header = draft.header
        scope = self.scope(header)
        # A reference to a resource that has its own problem needs no second message, but the
        # rule is still incomplete.
        incomplete = False
        match_expr = draft.match
        if match_expr is None or not match_expr.text.strip():
            match_expr = ExprText("true", ("spec", "match"))
        match = self._compile(scope, match_expr, draft.dialect)
        if match is not None and match.result_type not in ("BOOL", "DYNAMIC"):
            scope.error(
                match_expr.path,
                f"expression {match_expr.text!r} has type {match.result_type}, "
                "a match must be BOOL",
            )
        actions: list[ActionSpec] = []
        action_names: set[str] = set()
        for action in draft.actions:
            handler_path = (*action.path, "handler")
            handler_name = self._resolve(scope, handler_index, action.handler, header, handler_path)
            handler = self.handlers.get(handler_name) if handler_name is not None else None
            incomplete |= handler_name is not None and handler is None
            instances: list[str] = []
            for ref, ref_path in action.instances:
                instance = self._resolve(scope, instance_index, ref, header, ref_path)
                if instance is None:
                    continue
                if instance in instances:
                    scope.error(ref_path, f"instance {instance} is listed twice")
                    continue
                instances.append(instance)
                if instance not in self.instances:
                    incomplete = True
                elif handler is not None:
                    self._check_handler_takes(scope, ref_path, handler, instance)
            if action.name:
                if action.name in action_names:
                    scope.error((*action.path, "name"), f"action name {action.name!r} repeats")
                action_names.add(action.name)
            if handler_name is not None:
                actions.append(ActionSpec(handler_name, tuple(instances), action.name))
        request_ops = self._header_ops(scope, draft.request_header_operations, draft.dialect)
        response_ops = self._header_ops(scope, draft.response_header_operations, draft.dialect)
        sampling = self._sampling(scope, draft)
        dry_run = self._dry_run(scope, draft, actions)
        if scope.errors or incomplete or match is None:
            return None
        return RuleSpec(
            name=header.fqn,
            short_name=header.name,
            namespace=header.namespace,
            match_text=draft.match.text if draft.match is not None else "",
            match=match,
            dialect=draft.dialect,
            actions=tuple(actions),
            source=header.location,
            request_header_operations=request_ops,
            response_header_operations=response_ops,
            sampling=sampling,
            dry_run=dry_run,
        )

    def _dry_run(self, scope: Scope, draft: RuleDraft, actions: list[ActionSpec]) -> bool:
        """The rule's dry-run annotation; check actions are then counted, never combined, and
        quota actions charge a shadow bucket of their own (`mixer.runtime.dispatcher`)."""
        path = ("metadata", "annotations", names.DRY_RUN_ANNOTATION)
        try:
            dry_run = names.dry_run_for(draft.header.annotations)
        except ValueError as err:
            scope.error(path, str(err))
            return False
        return dry_run

    def _resolve(
        self, scope: Scope, index: NameIndex, ref: str, header: Header, path: Path_
    ) -> str | None:
        """The FQN `ref` names; None (with a problem unless it names a rejected resource)."""
        resolution = index.resolve(ref, header.namespace)
        if resolution.found is not None:
            return resolution.found
        what = index.base_kind
        if resolution.ambiguous:
            scope.error(path, f"{what} {ref!r} is ambiguous: {', '.join(resolution.ambiguous)}")
        else:
            scope.error(
                path, f"{what} {ref!r} not found (looked for {', '.join(resolution.tried)})"
            )
        return None

    def _check_handler_takes(
        self, scope: Scope, path: Path_, handler: HandlerSpec, instance_name: str
    ) -> None:
        template = self.instances[instance_name].template
        accepted = self.adapters[handler.adapter].templates
        if template not in accepted:
            scope.error(
                path,
                f"handler {handler.name} (adapter {handler.adapter}) cannot take instance "
                f"{instance_name} of template {template} "
                f"(it takes {', '.join(sorted(accepted))})",
            )

    def _header_ops(
        self, scope: Scope, drafts: list[HeaderOpDraft], dialect: str
    ) -> tuple[HeaderOperationSpec, ...]:
        result: list[HeaderOperationSpec] = []
        for op in drafts:
            programs = [self._compile(scope, value, dialect) for value in op.values]
            compiled = tuple(program for program in programs if program is not None)
            result.append(
                HeaderOperationSpec(
                    op.name, tuple(value.text for value in op.values), compiled, op.operation
                )
            )
        return tuple(result)

    def _sampling(self, scope: Scope, draft: RuleDraft) -> Sampling | None:
        if draft.sampling is None:
            return None
        random = None
        if draft.sampling.random is not None:
            r = draft.sampling.random
            expression = r.attribute_expression
            program = (
                None if expression is None else self._compile(scope, expression, draft.dialect)
            )
            random = RandomSampling(
                numerator=r.numerator,
                denominator=r.denominator,
                attribute_expression="" if expression is None else expression.text,
                program=program,
                use_independent_randomness=r.use_independent_randomness,
            )
        return Sampling(random, draft.sampling.rate_limit)

    # -- quota specs, bindings, rate-limit configs --------------------------------------------

    def _bindings(self) -> None:
        specs = {(spec.name, spec.namespace) for _, spec in self.parsed.quota_specs}
        quota_instances = {
            instance.short_name.lower()
            for instance in self.instances.values()
            if instance.template == "quota"
        }
        rejected_quotas = {
            draft.header.name.lower()
            for draft in self.parsed.instances
            if draft.header.fqn not in self.instances
        }
        for header, spec in self.parsed.quota_specs:
            self._unique(header, header.fqn)
            scope = self.scope(header)
            for rule_index, rule in enumerate(spec.rules):
                for quota_index, charge in enumerate(rule.quotas):
                    name = charge.quota.lower()
                    if name not in quota_instances and name not in rejected_quotas:
                        scope.error(
                            _quota_path(header, rule_index, quota_index),
                            f"quota {charge.quota!r} names no quota instance "
                            "(Mixer would grant every request for it)",
                        )
        for header, binding, paths in self.parsed.bindings:
            self._unique(header, header.fqn)
            scope = self.scope(header)
            for reference, path in zip(binding.quota_specs, paths, strict=True):
                if (reference.name, reference.namespace) not in specs:
                    scope.error(
                        path,
                        f"QuotaSpec {reference.name!r} not found in namespace "
                        f"{reference.namespace!r}",
                    )

    def _ratelimits(self) -> None:
        merged: dict[str, RateLimitConfig] = {}
        # composite key of each top-level descriptor -> where it was first written
        tops: dict[str, dict[str, tuple[int, str]]] = {}
        for doc, config in self.parsed.ratelimits:
            first = merged.get(config.domain)
            if first is not None and not self.merge_ratelimit_domains:
                self.problems.append(
                    ConfigProblem(
                        doc.path,
                        doc.line_of(("domain",)),
                        f"ratelimit/{config.domain}",
                        "domain",
                        f"duplicate domain {config.domain!r} (also at {first.source})",
                    )
                )
                continue
            seen = tops.setdefault(config.domain, {})
            for index, descriptor in enumerate(config.descriptors):
                composite = _composite(descriptor)
                at = seen.get(composite)
                here = f"{doc.path}:{doc.line_of(('descriptors', index))}"
                if at is not None and at[0] != id(doc):  # the same document reported it
                    self.problems.append(
                        ConfigProblem(
                            doc.path,
                            doc.line_of(("descriptors", index)),
                            f"ratelimit/{config.domain}",
                            f"descriptors[{index}]",
                            f"duplicate descriptor {composite!r} in domain {config.domain!r} "
                            f"(also at {at[1]})",
                        )
                    )
                seen.setdefault(composite, (id(doc), here))
            if first is None:
                merged[config.domain] = config
            else:
                merged[config.domain] = dataclasses.replace(
                    first, descriptors=first.descriptors + config.descriptors
                )
        self._ratelimit_configs = list(merged.values())


def _composite(descriptor: RateLimitDescriptor) -> str:
    """envoyproxy/ratelimit's key for a descriptor among its siblings."""
    if descriptor.value:
        return f"{descriptor.key}_{descriptor.value}"
    return descriptor.key


def _quota_path(header: Header, rule_index: int, quota_index: int) -> Path_:
    """The document path of a QuotaSpec's quota name, keys as written (camel or snake case)."""
    spec = header.doc.data.get("spec") or {}
    rules_key = _key_as_written(spec, "rules")
    rule = spec[rules_key][rule_index]
    quotas_key = _key_as_written(rule, "quotas")
    quota = rule[quotas_key][quota_index]
    return ("spec", rules_key, rule_index, quotas_key, quota_index, _key_as_written(quota, "quota"))


def _key_as_written(mapping: Mapping[Any, Any], key: str) -> str:
    return next((str(k) for k in mapping if snake(str(k)) == key), key)


def _param_path(params: Any, base: Path_, dotted: str) -> Path_:
    """The document path of an adapter's ParamError path (``quotas[0].maxAmount``).

    Keys are matched in either case style, so ``max_amount`` finds ``maxAmount`` as written; the
    rest of a path that goes where the YAML has nothing is kept as the adapter wrote it.
    """
    tokens: list[str | int] = [
        int(index) if index else name for name, index in _PARAM_TOKEN.findall(dotted)
    ]
    path: list[str | int] = list(base)
    node = params
    for position, token in enumerate(tokens):
        if isinstance(token, int) and isinstance(node, list) and 0 <= token < len(node):
            path.append(token)
            node = node[token]
        elif isinstance(token, str) and isinstance(node, dict):
            key = next((k for k in node if snake(str(k)) == snake(token)), None)
            if key is None:
                path.extend(tokens[position:])
                break
            path.append(str(key))
            node = node[key]
        else:
            path.extend(tokens[position:])
            break
    return tuple(path)
