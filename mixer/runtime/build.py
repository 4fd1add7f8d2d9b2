"""Config snapshot -> runtime: build handlers (reusing unchanged ones), routes and workers, once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from adapters import load_registry
from adapters.base import AdapterInfo, Env, Handler, ParamError
from mixer.config import ConfigProblem, load_config
from mixer.config import validate_directory as _validate
from mixer.config.cache import ConfigCache
from mixer.config.model import HandlerSpec, HeaderOperationSpec, RuleSpec, Snapshot, thaw
from mixer.errors import ConfigError
from mixer.expr.predicates import required_equalities
from mixer.runtime.check_cache import CheckCache
from mixer.runtime.dispatcher import Dispatcher
from mixer.runtime.quota_specs import QuotaSelector
from mixer.runtime.ratelimit import build_ratelimit_table
from mixer.runtime.reporting import ReportWorker
from mixer.runtime.routing import (
    Action,
    HandlerEntry,
    HeaderOp,
    HeaderOperationTemplate,
    InstanceBuilder,
    RoutingTable,
    Rule,
)
from mixer.runtime.runtime import Runtime
from mixer.runtime.sampling import Sampler
from mixer.telemetry import ServerMetrics
from mixer.templates import TEMPLATES, Variety

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def adapter_registry() -> Mapping[str, AdapterInfo]:
    """Built-in and plugin adapters, loaded and checked once per process."""
    return load_registry()


def load_snapshot(
    directory: Path,
    cel_libraries: Iterable[str] | None = None,
    *,
    merge_ratelimit_domains: bool = False,
    cache: ConfigCache | None = None,
) -> Snapshot:
    """Load and validate a config directory (raises ConfigError listing every problem); CEL
    expressions may use `cel_libraries` (None: all); `merge_ratelimit_domains` and `cache` (what
    one load reuses from the last) as in `mixer.config.validate.check_config`."""
    return load_config(
        directory,
        adapter_registry(),
        cel_libraries=cel_libraries,
        merge_ratelimit_domains=merge_ratelimit_domains,
        cache=cache,
    )


def validate_directory(
    directory: Path,
    cel_libraries: Iterable[str] | None = None,
    *,
    merge_ratelimit_domains: bool = False,
) -> list[ConfigProblem]:
    """Every problem of a config directory, without building anything or dialling out; CEL
    expressions may use `cel_libraries` (None: all)."""
    return _validate(
        directory,
        adapter_registry(),
        cel_libraries=cel_libraries,
        merge_ratelimit_domains=merge_ratelimit_domains,
    )


def _header_ops(specs: tuple[HeaderOperationSpec, ...]) -> tuple[HeaderOperationTemplate, ...]:
    return tuple(
        HeaderOperationTemplate(s.name.lower(), s.programs, HeaderOp(s.operation.value))
        for s in specs
    )


async def build_runtime(
    snapshot: Snapshot,
    metrics: ServerMetrics,
    *,
    revision: str,
    previous: Runtime | None = None,
    handler_timeout: float = 1.0,
    cache_size: int = 100_000,
    cache_bytes: int = 64 * 1024 * 1024,
    max_series: int = 2000,
    max_quota_bytes: int = 64 * 1024 * 1024,
    metrics_registry: CollectorRegistry | None = None,
    redis_url: str = "",
    ratelimit_epoch_windows: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Runtime:
    """Build handlers (reusing those whose name and params did not change), routes and workers.

    Adapters register their series on `metrics_registry` (served on the adapters' metrics port,
    Mixer's :42422); it must outlive runtimes so that a swap keeps counters monotonic. `clock`
    (monotonic seconds) is the handlers' time: `mixer test` passes a frozen one so that quota
    state depends only on the requests made.
    """
    registry = adapter_registry()
    old_handlers = previous.handlers if previous is not None else {}
    old_workers = previous.workers if previous is not None else {}
    handlers: dict[str, HandlerEntry] = {}
    by_name: dict[str, HandlerEntry] = {}
    workers: dict[str, ReportWorker] = {}
    built: list[Handler] = []
    try:
        for spec in snapshot.handlers.values():
            adapter, params = _effective_adapter(spec, registry, redis_url)
            key = f"{spec.name}\n{spec.signature}\n{adapter}"
            entry = old_handlers.get(key)
            if entry is None:
                env = Env(
                    handler_name=spec.name,
                    logger=logging.getLogger(f"adapters.{adapter}"),
                    registry=metrics_registry if metrics_registry is not None else metrics.registry,
                    clock=clock,
                    max_series=max_series,
                    max_quota_bytes=max_quota_bytes,
                )
                handler = registry[adapter].build(params, env)
                built.append(handler)
                entry = HandlerEntry(spec.name, adapter, handler, key)
            handlers[key] = entry
            by_name[spec.name] = entry
            if entry.reporter is not None:
                worker = old_workers.get(spec.name)
                if worker is None or old_handlers.get(key) is not entry:
                    worker = ReportWorker(
                        spec.name,
                        adapter,
                        entry.reporter,
                        metrics,
                        timeout=max(handler_timeout, 5.0),
                        inline=entry.inline,
                    )
                workers[spec.name] = worker
    except Exception:
        for handler in built:  # a config that fails to build leaves nothing open behind it
            await handler.close()
        raise
    rules = tuple(_rule(r, snapshot, by_name) for r in snapshot.rules)
    routes = RoutingTable(default_namespace=snapshot.default_namespace, rules=rules)
    dispatcher = Dispatcher(
        routes,
        workers,
        metrics,
        handler_timeout=handler_timeout,
        cache=CheckCache(
            cache_size,
            max_bytes=cache_bytes,
            on_evict=metrics.limit_exceeded.labels("check_cache_bytes").inc,
        ),
    )
    summary = {
        "handlers": len(snapshot.handlers),
        "instances": len(snapshot.instances),
        "rules": len(snapshot.rules),
        "attributes": len(snapshot.vocabulary),
    }
    selector = QuotaSelector(snapshot.quota_specs, snapshot.quota_spec_bindings)
    ratelimit = await build_ratelimit_table(
        snapshot,
        metrics_registry or metrics.registry,
        redis_url,
        registry=registry,
        calls=dispatcher.calls,
        previous=previous.ratelimit if previous is not None else None,
        epoch_windows=ratelimit_epoch_windows,
        max_quota_bytes=max_quota_bytes,
        clock=clock,
    )
    return Runtime(
        revision, dispatcher, handlers, workers, snapshot, summary, selector, ratelimit=ratelimit
    )


def _effective_adapter(
    spec: HandlerSpec, registry: Mapping[str, AdapterInfo], redis_url: str
) -> tuple[str, Any]:
    """The adapter and params a handler runs with.

    With a Redis URL (``--redis-url``), memquota handlers run on redisquota with the same quotas,
    so that the shipped config shares its budgets across replicas without being edited.
    """
    if not redis_url or spec.adapter != "memquota":
        return spec.adapter, spec.adapter_params
    raw = thaw(spec.params)
    raw["redisServerUrl"] = redis_url
    try:
        return "redisquota", registry["redisquota"].parse_params(raw)
    except ParamError as exc:
        raise ConfigError(
            [
                f"{spec.source}: handler/{spec.short_name}: with --redis-url this memquota "
                f"handler runs on redisquota, which refuses its params: {exc}"
            ]
        ) from exc


def _rule(spec: RuleSpec, snapshot: Snapshot, handlers: Mapping[str, HandlerEntry]) -> Rule:
    actions: list[Action] = []
    for action in spec.actions:
        entry = handlers[action.handler]
        by_variety: dict[Variety, list[InstanceBuilder]] = {}
        for name in action.instances:
            inst = snapshot.instances[name]
            variety = TEMPLATES[inst.template].variety
            fields: Mapping[str, Any] = inst.programs
            by_variety.setdefault(variety, []).append(
                InstanceBuilder(
                    inst.name,
                    inst.short_name,
                    inst.template,
                    fields,
                    bindings=tuple(inst.binding_programs.items()),
                )
            )
        for variety, builders in by_variety.items():
            actions.append(Action(entry, tuple(builders), variety, action.name))
    requires, leading = required_equalities(spec.match_text, spec.dialect, snapshot.vocabulary)
    return Rule(
        name=spec.name,
        namespace=spec.namespace,
        match=None if spec.always_matches else spec.match,
        actions=tuple(actions),
        request_header_operations=_header_ops(spec.request_header_operations),
        response_header_operations=_header_ops(spec.response_header_operations),
        sampler=Sampler(spec.sampling) if spec.sampling is not None else None,
        requires=requires,
        leading=leading,
        dry_run=spec.dry_run,
    )
