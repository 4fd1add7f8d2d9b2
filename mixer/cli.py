"""The `mixer` command: serve, validate, check, report, version."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mixer import __version__
from mixer.attributes.limits import Limits
from mixer.redact import mask_credentials
from mixer.settings import Settings, env_default


def _path_env(name: str) -> Path | None:
    value = env_default(name, "")
    return Path(value) if value else None


def _bool_env(name: str) -> bool:
    return env_default(name, "").lower() in ("1", "true", "yes", "on")


def parse_value(name: str, text: str, vocabulary: Mapping[str, str]) -> object:
    """Turn `text` into the attribute's type from the vocabulary (inferred when unknown)."""
    from adapters.base import ParamError
    from adapters.toolkit.params import duration_param

    kind = vocabulary.get(name)
    try:
        if kind == "STRING_MAP":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            return {str(k): str(v) for k, v in data.items()}
        if kind == "INT64":
            return int(text)
        if kind == "DOUBLE":
            return float(text)
        if kind == "BOOL":
            if text.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return text.lower() == "true"
        if kind == "IP_ADDRESS":
            return ipaddress.ip_address(text)
        if kind == "TIMESTAMP":
            ts = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return ts if ts.tzinfo else ts.replace(tzinfo=datetime.UTC)
        if kind == "DURATION":
            return duration_param(text, name)
    except (ValueError, ParamError) as exc:
        raise SystemExit(f"--attr {name}: {kind} value {text!r} is invalid: {exc}") from None
    if kind is None and text.lstrip("-").isdigit():
        return int(text)
    return text


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
        choices=["draft", "ietf", "off"],
        help="rate-limit response headers of the RLS API: x-ratelimit-* (draft), IETF, or none",
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
    limits = Limits()
    for flag, default, text in (
        ("max-message-bytes", 4 * 1024 * 1024, "largest gRPC message accepted"),
        ("max-concurrent-streams", 1000, "concurrent streams per connection"),
        ("max-attributes", limits.max_attributes, "attributes plus map entries per bag"),
        ("max-words", limits.max_words, "message words per CompressedAttributes"),
        ("max-string-length", limits.max_string_length, "longest string or bytes value"),
        ("max-report-entries", limits.max_report_entries, "entries per Report batch"),
        ("max-als-entries", limits.max_als_entries, "entries per access-log message"),
    ):
        env = flag.upper().replace("-", "_")
        p.add_argument(
            f"--{flag}", type=int, default=int(env_default(env, str(default))), help=text
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
        help="serve /debug/config and /debug/routes on the admin port",
    )
    p.add_argument(
        "--redis-url",
        default=env_default("REDIS_URL", ""),
        help="Redis for quotas: memquota handlers and the rate-limit service run on it",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mixer` console script."""
    parser = argparse.ArgumentParser(prog="mixer", description="Mixer-style policy and telemetry")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    v = sub.add_parser("validate", help="validate a config directory")
    v.add_argument("directory", type=Path, nargs="?", default=Path("rules"))
    v.add_argument("--format", choices=["text", "json"], default="text")
    for name, help_text in (("check", "send a Check"), ("report", "send a Report")):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--address", default=env_default("CLIENT_ADDRESS", "127.0.0.1:9091"))
        c.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE")
        c.add_argument("--timeout", type=float, default=5.0)
        if name == "check":
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
        return _validate(args.directory, args.format)
    return _client(args)


def _serve(args: argparse.Namespace) -> int:
    from mixer.server import logs

    settings = Settings(
        config_dir=args.config_dir,
        address=args.address,
        admin_address=args.admin_address,
        metrics_address=args.metrics_address,
        workers=args.workers,
        reuse_port=args.reuse_port,
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
        max_message_bytes=args.max_message_bytes,
        max_concurrent_streams=args.max_concurrent_streams,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        limits=Limits(
            max_attributes=args.max_attributes,
            max_words=args.max_words,
            max_string_length=args.max_string_length,
            max_report_entries=args.max_report_entries,
            max_als_entries=args.max_als_entries,
        ),
    )
    if not settings.max_loop_lag > 0:
        print("mixer serve: --max-loop-lag must be more than 0 seconds", file=sys.stderr)
        return 2
    if (settings.tls_cert is None) != (settings.tls_key is None):
        print("mixer serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        print("mixer serve: --tls-client-ca needs --tls-cert and --tls-key", file=sys.stderr)
        return 2
    if settings.redis_url:
        os.environ["MIXER_REDIS_URL"] = settings.redis_url
    logs.configure(settings.log_level, settings.log_format)
    if settings.workers > 1:
        from mixer.server.workers import run_workers

        return run_workers(settings, sys.argv)
    from mixer.server.app import serve

    return asyncio.run(serve(settings))


def _validate(directory: Path, fmt: str) -> int:
    from mixer.runtime.build import validate_directory

    problems = validate_directory(directory)
    if fmt == "json":
        report = {"valid": not problems, "errors": [p.to_dict() for p in problems]}
        print(mask_credentials(json.dumps(report, indent=2)))
    elif problems:
        for problem in problems:
            print(mask_credentials(str(problem)))
        print(f"{len(problems)} error(s) in {directory}", file=sys.stderr)
    else:
        print(f"{directory}: valid")
    return 1 if problems else 0


def _client(args: argparse.Namespace) -> int:
    import grpc

    from mixer.client import MixerClient
    from mixer.expr.vocabulary import ISTIO_1_4_VOCABULARY

    attrs = parse_attributes(args.attr, ISTIO_1_4_VOCABULARY)
    with MixerClient(args.address, timeout=args.timeout) as client:
        try:
            if args.command == "report":
                client.report([attrs])
                print(json.dumps({"status": "OK"}))
                return 0
            quotas: dict[str, int | tuple[int, bool]] = {}
            for item in args.quota:
                name, _, rest = item.partition("=")
                amount, _, flag = rest.partition(",")
                quotas[name] = (int(amount or "1"), flag == "best-effort")
            answer = client.check(attrs, quotas)
        except grpc.RpcError as err:
            print(json.dumps({"error": {"code": err.code().name, "message": err.details()}}))
            return 2
    print(json.dumps(answer.as_json(), indent=2))
    return 0 if answer.status_code == 0 else 3
