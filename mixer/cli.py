"""The `mixer` command: serve, validate, test, check, report, version."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mixer import __version__
from mixer.attributes.limits import LIMIT_FLAGS, Limits
from mixer.attributes.mask import DEFAULT_MASK, Mask
from mixer.expr import CEL_LIBRARIES
from mixer.redact import mask_credentials
from mixer.settings import Settings, env_default, parse_cel_libraries


def _path_env(name: str) -> Path | None:
    value = env_default(name, "")
    return Path(value) if value else None


def _bool_env(name: str) -> bool:
    return env_default(name, "").lower() in ("1", "true", "yes", "on")


def parse_value(name: str, text: str, vocabulary: Mapping[str, str]) -> object:
    """Turn `text` into the attribute's type from the vocabulary (inferred when unknown)."""
    from mixer.config.values import typed_value

    try:
        return typed_value(name, text, vocabulary)
    except ValueError as exc:
        raise SystemExit(f"--attr {exc}") from None


def parse_attributes(items: Sequence[str], vocabulary: Mapping[str, str]) -> dict[str, object]:
    """Parse ``name=value`` and ``name[key]=value`` (string-map entry) arguments."""
    attrs: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--attr expects NAME=VALUE, got {item!r}")
        if name.endswith("]") and "[" in name:
            base, _, key = name[:-1].partition("[")
            current = attrs.setdefault(base, {})
            if not isinstance(current, dict):
                raise SystemExit(f"--attr {base} is both a map and a {type(current).__name__}")
            current[key.strip("\"'")] = text
            continue
        attrs[name] = parse_value(name, text, vocabulary)
    return attrs


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the gRPC service")
    p.add_argument("--config-dir", default=env_default("CONFIG_DIR", "rules"), type=Path)
    p.add_argument("--address", default=env_default("ADDRESS", "0.0.0.0:9091"))
    p.add_argument("--admin-address", default=env_default("ADMIN_ADDRESS", "127.0.0.1:15014"))
    p.add_argument(
        "--metrics-address",
        default=env_default("METRICS_ADDRESS", "0.0.0.0:42422"),
        help="where the prometheus adapter's metrics are served",
    )
    p.add_argument("--workers", type=int, default=int(env_default("WORKERS", "1")))
    p.add_argument(
        "--server-flavour",
        default=env_default("SERVER_FLAVOUR", "sync"),
        choices=["aio", "sync"],
        help="a sync grpcio server with a thread pool, or grpc.aio (docs/decisions/0015)",
    )
    # Internal: how `--workers N` starts its processes, so that only they share the port.
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--log-level",
        default=env_default("LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    p.add_argument(
        "--log-format", default=env_default("LOG_FORMAT", "json"), choices=["json", "text"]
    )
    p.add_argument("--grace-period", type=float, default=float(env_default("GRACE_PERIOD", "10")))
    p.add_argument(
        "--handler-timeout", type=float, default=float(env_default("HANDLER_TIMEOUT", "1.0"))
    )
    p.add_argument("--poll-interval", type=float, default=float(env_default("POLL_INTERVAL", "5")))
    p.add_argument(
        "--max-loop-lag",
        type=float,
        default=float(env_default("MAX_LOOP_LAG", "1.0")),
        help="event-loop lag (seconds) above which /healthz and /readyz answer 503",
    )
    p.add_argument(
        "--ratelimit-headers",
        default=env_default("RATELIMIT_HEADERS", "draft"),
        choices=["draft", "ietf", "ratelimit", "off"],
        help="rate-limit response headers of the RLS API: x-ratelimit-* (draft), IETF, "
        "envoyproxy/ratelimit's RateLimit-Limit/-Remaining/-Reset, or none",
    )
    p.add_argument(
        "--ratelimit-merge-domains",
        action="store_true",
        default=_bool_env("RATELIMIT_MERGE_DOMAINS"),
        help="merge rate-limit files of one domain (envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG)",
    )
    p.add_argument(
        "--ratelimit-shadow-mode",
        action="store_true",
        default=_bool_env("RATELIMIT_SHADOW_MODE"),
        help="answer every RLS call OK, statuses kept (envoyproxy/ratelimit's SHADOW_MODE)",
    )
    p.add_argument(
        "--ratelimit-quota-mode",
        action="store_true",
        default=_bool_env("RATELIMIT_QUOTA_MODE"),
        help="every RLS descriptor in quota mode (envoyproxy/ratelimit's QUOTA_MODE)",
    )
    p.add_argument(
        "--ratelimit-dynamic-metadata",
        action="store_true",
        default=_bool_env("RATELIMIT_DYNAMIC_METADATA"),
        help="RLS answers carry dynamic metadata (RESPONSE_DYNAMIC_METADATA)",
    )
    p.add_argument(
        "--ratelimit-near-limit-ratio",
        type=float,
        default=float(env_default("RATELIMIT_NEAR_LIMIT_RATIO", "0.8")),
        help="share of a limit past which hits count as near_limit (NEAR_LIMIT_RATIO)",
    )
    p.add_argument(
        "--ratelimit-epoch-windows",
        action="store_true",
        default=_bool_env("RATELIMIT_EPOCH_WINDOWS"),
        help="rate-limit windows start at multiples of their unit since the epoch, as "
        "envoyproxy/ratelimit's (default: at each bucket's first hit)",
    )
    p.add_argument(
        "--ratelimit-max-stat-keys",
        type=int,
        default=int(env_default("RATELIMIT_MAX_STAT_KEYS", "10000")),
        help="request-valued rate-limit statistics keys kept before folding into the rule's",
    )
    p.add_argument(
        "--authz-dedup-header",
        default=env_default("AUTHZ_DEDUP_HEADER", ""),
        metavar="NAME",
        help="ext_authz: the request header that is the quota deduplication id (default: none;"
        " set it only when the proxy sets or overwrites that header)",
    )
    p.add_argument(
        "--tls-cert",
        type=Path,
        default=_path_env("TLS_CERT"),
        help="serve gRPC over TLS with this certificate chain (PEM)",
    )
    p.add_argument("--tls-key", type=Path, default=_path_env("TLS_KEY"), help="its private key")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_path_env("TLS_CLIENT_CA"),
        help="require client certificates signed by this CA bundle (mutual TLS)",
    )
    for flag, default, text in (
        ("max-message-bytes", 4 * 1024 * 1024, "largest gRPC message accepted"),
        ("max-concurrent-streams", 1000, "concurrent streams per connection"),
        ("check-cache-size", Settings.check_cache_size, "check cache entries"),
        ("check-cache-bytes", Settings.check_cache_bytes, "check cache size in bytes (estimated)"),
        ("max-series", Settings.max_series, "label sets per adapter metric (then overflow)"),
        (
            "max-quota-bucket-bytes",
            Settings.max_quota_bucket_bytes,
            "bytes of in-memory quota buckets per handler (then new buckets are refused)",
        ),
        ("max-config-nodes", Settings.max_config_nodes, "nodes per config document, expanded"),
        ("admin-max-connections", Settings.admin_max_connections, "open admin HTTP connections"),
    ):
        env = flag.upper().replace("-", "_")
        p.add_argument(
            f"--{flag}", type=int, default=int(env_default(env, str(default))), help=text
        )
    p.add_argument(
        "--admin-timeout",
        type=float,
        default=float(env_default("ADMIN_TIMEOUT", str(Settings.admin_timeout))),
        help="seconds an admin HTTP connection may take to send a request",
    )
    limits = Limits()
    for name, text in LIMIT_FLAGS:
        flag = name.replace("_", "-")
        p.add_argument(
            f"--{flag}",
            type=int,
            default=int(env_default(name.upper(), str(getattr(limits, name)))),
            help=text,
        )
    p.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        default=not _bool_env("NO_WATCH"),
        help="reload only on SIGHUP (no inotify, no polling)",
    )
    p.add_argument(
        "--enable-debug",
        action="store_true",
        default=_bool_env("ENABLE_DEBUG"),
        help="serve /debug/config, /debug/routes and POST /debug/explain on the admin port",
    )
    p.add_argument(
        "--decision-log-handler",
        default=env_default("DECISION_LOG_HANDLER", ""),
        help="log Check/ext_authz decisions through this stdio or otel handler (off when empty)",
    )
    p.add_argument(
        "--decision-log-sample",
        type=float,
        default=float(env_default("DECISION_LOG_SAMPLE", "1.0")),
        help="fraction of decisions logged, from 0 to 1",
    )
    p.add_argument(
        "--decision-log-mask",
        default=env_default("DECISION_LOG_MASK", ",".join(DEFAULT_MASK)),
        help="comma-separated NAME or NAME[KEY] attributes whose values are never logged",
    )
    p.add_argument(
        "--redis-url",
        default=env_default("REDIS_URL", ""),
        help="Redis for quotas: memquota handlers and the rate-limit service run on it",
    )
    _cel_libraries_option(p)


def _cel_libraries_option(p: Any) -> None:
    # One option for serve and validate, so that validate checks what serve would load.
    p.add_argument(
        "--cel-libraries",
        default=env_default("CEL_LIBRARIES", "all"),
        metavar="NAMES",
        help=(
            "CEL extension libraries rules may use, comma-separated: "
            f"{', '.join(CEL_LIBRARIES)}; or all (the default) or none"
        ),
    )


def _cel_libraries(args: argparse.Namespace, command: str) -> tuple[str, ...]:
    try:
        return parse_cel_libraries(args.cel_libraries)
    except ValueError as err:
        raise SystemExit(f"mixer {command}: --cel-libraries: {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mixer` console script."""
    parser = argparse.ArgumentParser(prog="mixer", description="Mixer-style policy and telemetry")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    v = sub.add_parser("validate", help="validate a config directory")
    v.add_argument("directory", type=Path, nargs="?", default=Path("rules"))
    v.add_argument("--format", choices=["text", "json"], default="text")
    _cel_libraries_option(v)
    v.add_argument(
        "--ratelimit-merge-domains",
        action="store_true",
        default=_bool_env("RATELIMIT_MERGE_DOMAINS"),
        help="as mixer serve's flag: rate-limit files of one domain are merged",
    )
    v.add_argument(
        "--max-config-nodes",
        type=int,
        default=int(env_default("MAX_CONFIG_NODES", str(Settings.max_config_nodes))),
        help="nodes per config document, aliases expanded",
    )
    t = sub.add_parser("test", help="run rule tests (*_test.yaml) against a config directory")
    t.add_argument("directory", type=Path, nargs="?", default=Path("rules"))
    t.add_argument(
        "paths", type=Path, nargs="*", help="test files or directories (default: the config dir)"
    )
    t.add_argument("--run", metavar="PATTERN", help="only cases whose file::name matches (regex)")
    t.add_argument("--format", choices=["text", "junit"], default="text")
    t.add_argument("-v", "--verbose", action="store_true", help="explain every case's decision")
    for name, help_text in (("check", "send a Check"), ("report", "send a Report")):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--address", default=env_default("CLIENT_ADDRESS", "127.0.0.1:9091"))
        c.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE")
        c.add_argument("--timeout", type=float, default=5.0)
        if name == "check":
            c.add_argument(
                "--explain",
                action="store_true",
                help="evaluate in process against --config-dir and explain every rule's part",
            )
            c.add_argument(
                "--config-dir", type=Path, default=Path(env_default("CONFIG_DIR", "rules"))
            )
            c.add_argument(
                "--quota",
                action="append",
                default=[],
                metavar="NAME=AMOUNT",
                help="request a quota; append ',best-effort' for best effort",
            )
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "serve":
        return _serve(args)
    if args.command == "validate":
        from mixer.config.source import set_max_nodes

        set_max_nodes(args.max_config_nodes)
        return _validate(
            args.directory,
            args.format,
            _cel_libraries(args, "validate"),
            args.ratelimit_merge_domains,
        )
    if args.command == "test":
        from mixer.rulestest.run import main as run_tests

        return run_tests(
            args.directory, args.paths, pattern=args.run, fmt=args.format, verbose=args.verbose
        )
    return _client(args)


def _serve(args: argparse.Namespace) -> int:
    from mixer.config.source import set_max_nodes
    from mixer.server import logs

    settings = Settings(
        config_dir=args.config_dir,
        address=args.address,
        admin_address=args.admin_address,
        metrics_address=args.metrics_address,
        workers=args.workers,
        reuse_port=args.reuse_port,
        server_flavour=args.server_flavour,
        log_level=args.log_level,
        log_format=args.log_format,
        grace_period=args.grace_period,
        handler_timeout=args.handler_timeout,
        poll_interval=args.poll_interval,
        max_loop_lag=args.max_loop_lag,
        watch=args.watch,
        enable_debug=args.enable_debug,
        redis_url=args.redis_url,
        ratelimit_headers=args.ratelimit_headers,
        ratelimit_merge_domains=args.ratelimit_merge_domains,
        ratelimit_shadow_mode=args.ratelimit_shadow_mode,
        ratelimit_near_limit_ratio=args.ratelimit_near_limit_ratio,
        ratelimit_quota_mode=args.ratelimit_quota_mode,
        ratelimit_dynamic_metadata=args.ratelimit_dynamic_metadata,
        ratelimit_max_stat_keys=args.ratelimit_max_stat_keys,
        ratelimit_epoch_windows=args.ratelimit_epoch_windows,
        authz_dedup_header=args.authz_dedup_header.strip().lower(),
        max_message_bytes=args.max_message_bytes,
        max_concurrent_streams=args.max_concurrent_streams,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        check_cache_size=args.check_cache_size,
        check_cache_bytes=args.check_cache_bytes,
        max_series=args.max_series,
        max_quota_bucket_bytes=args.max_quota_bucket_bytes,
        max_config_nodes=args.max_config_nodes,
        admin_timeout=args.admin_timeout,
        admin_max_connections=args.admin_max_connections,
        limits=Limits(**{name: getattr(args, name) for name, _ in LIMIT_FLAGS}),
        cel_libraries=_cel_libraries(args, "serve"),
        decision_log_handler=args.decision_log_handler,
        decision_log_sample=args.decision_log_sample,
        decision_log_mask=tuple(m.strip() for m in args.decision_log_mask.split(",") if m.strip()),
    )
    if not settings.max_loop_lag > 0:
        print("mixer serve: --max-loop-lag must be more than 0 seconds", file=sys.stderr)
        return 2
    if (settings.tls_cert is None) != (settings.tls_key is None):
        print("mixer serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if not 0.0 <= settings.decision_log_sample <= 1.0:
        print("mixer serve: --decision-log-sample must be from 0 to 1", file=sys.stderr)
        return 2
    try:
        Mask.parse(settings.decision_log_mask)
    except ValueError as exc:
        print(f"mixer serve: --decision-log-mask: {exc}", file=sys.stderr)
        return 2
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        print("mixer serve: --tls-client-ca needs --tls-cert and --tls-key", file=sys.stderr)
        return 2
    if not 0 < settings.ratelimit_near_limit_ratio <= 1:
        print("mixer serve: --ratelimit-near-limit-ratio must be in (0, 1]", file=sys.stderr)
        return 2
    if settings.ratelimit_max_stat_keys < 0:
        print("mixer serve: --ratelimit-max-stat-keys must not be negative", file=sys.stderr)
        return 2
    if settings.redis_url:
        os.environ["MIXER_REDIS_URL"] = settings.redis_url
    logs.configure(settings.log_level, settings.log_format)
    set_max_nodes(settings.max_config_nodes)
    if settings.workers > 1:
        from mixer.server.workers import run_workers

        return run_workers(settings, sys.argv)
    from mixer.server.app import run

    return run(settings)


def _validate(
    directory: Path, fmt: str, cel_libraries: tuple[str, ...], merge_ratelimit_domains: bool = False
) -> int:
    from mixer.runtime.build import load_snapshot, validate_directory

    problems = validate_directory(
        directory, cel_libraries, merge_ratelimit_domains=merge_ratelimit_domains
    )
    # Rules that are evaluated and counted but never deny: a rollout step, easy to forget.
    dry_run = (
        []
        if problems
        else [
            r.name
            for r in load_snapshot(
                directory, cel_libraries, merge_ratelimit_domains=merge_ratelimit_domains
            ).rules
            if r.dry_run
        ]
    )
    if fmt == "json":
        report = {
            "valid": not problems,
            "errors": [p.to_dict() for p in problems],
            "dry_run": dry_run,
        }
        print(mask_credentials(json.dumps(report, indent=2)))
    elif problems:
        for problem in problems:
            print(mask_credentials(str(problem)))
        print(f"{len(problems)} error(s) in {directory}", file=sys.stderr)
    else:
        print(f"{directory}: valid")
        for name in dry_run:
            print(f"dry-run (never denies): {name}")
    return 1 if problems else 0


def _client(args: argparse.Namespace) -> int:
    import grpc

    from mixer.client import MixerClient
    from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY

    if args.command == "check" and args.explain:
        return _explain(args)
    attrs = parse_attributes(args.attr, ISTIO_1_4_VOCABULARY)
    with MixerClient(args.address, timeout=args.timeout) as client:
        try:
            if args.command == "report":
                client.report([attrs])
                print(json.dumps({"status": "OK"}))
                return 0
            answer = client.check(attrs, _quotas(args.quota))
        except grpc.RpcError as err:
            print(json.dumps({"error": {"code": err.code().name, "message": err.details()}}))
            return 2
    print(json.dumps(answer.as_json(), indent=2))
    return 0 if answer.status_code == 0 else 3


def _quotas(items: Sequence[str]) -> dict[str, tuple[int, bool]]:
    quotas: dict[str, tuple[int, bool]] = {}
    for item in items:
        name, _, rest = item.partition("=")
        amount, _, flag = rest.partition(",")
        quotas[name] = (int(amount or "1"), flag == "best-effort")
    return quotas


def _explain(args: argparse.Namespace) -> int:
    """`mixer check --explain`: the Check evaluated in process, then why, rule by rule."""
    from mixer.attributes.bag import Bag
    from mixer.config.values import bag_from_data
    from mixer.errors import ConfigError
    from mixer.runtime.build import build_runtime, load_snapshot
    from mixer.runtime.dispatcher import QuotaRequest
    from mixer.runtime.explain import explain_check
    from mixer.runtime.runtime import RuntimeHolder
    from mixer.telemetry import ServerMetrics

    try:
        snapshot = load_snapshot(args.config_dir)
    except ConfigError as exc:
        print(f"mixer check --explain: {args.config_dir} is not a valid config:\n{exc}")
        return 2
    attrs = parse_attributes(args.attr, snapshot.vocabulary)
    try:
        bag: Bag = bag_from_data(attrs, snapshot.vocabulary)
    except ValueError as exc:
        raise SystemExit(f"--attr {exc}") from None
    quotas = {k: QuotaRequest(n, b) for k, (n, b) in _quotas(args.quota).items()}

    async def run() -> str:
        runtime = await build_runtime(snapshot, ServerMetrics.create(), revision="explain")
        holder = RuntimeHolder(runtime)
        try:
            outcome = await runtime.dispatcher.check(bag, quotas)
            return explain_check(runtime, bag, outcome).to_text()
        finally:
            await holder.close()

    text = asyncio.run(run())
    print(text)
    return 0 if text.startswith("answer: OK") else 3
