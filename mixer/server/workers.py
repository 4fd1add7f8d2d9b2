"""`--workers N`: N serving processes sharing the gRPC port through SO_REUSEPORT.

Only they share it: the supervisor first checks that nothing listens on the address (another
mixer included), and only its workers are started with `--reuse-port`.

The kernel spreads connections across the processes, so every core serves. Worker k's admin
port is the configured one plus k (and likewise the prometheus adapter's port), so each can be
scraped on its own. SIGTERM/SIGINT/SIGHUP are forwarded to every worker.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from mixer.attributes.limits import LIMIT_FLAGS
from mixer.server.ports import ensure_free
from mixer.settings import Settings, split_address

logger = logging.getLogger(__name__)


def _offset(address: str, k: int) -> str:
    host, port = split_address(address)
    return f"{host}:{port + k if port else 0}"


def worker_argv(settings: Settings, k: int) -> list[str]:
    """The command line of worker `k`."""
    return [
        sys.executable,
        "-m",
        "mixer",
        "serve",
        "--workers",
        "1",
        "--reuse-port",
        "--server-flavour",
        settings.server_flavour,
        "--config-dir",
        str(settings.config_dir),
        "--address",
        settings.address,
        "--admin-address",
        _offset(settings.admin_address, k),
        "--metrics-address",
        _offset(settings.metrics_address, k),
        "--log-level",
        settings.log_level,
        "--log-format",
        settings.log_format,
        "--grace-period",
        str(settings.grace_period),
        "--handler-timeout",
        str(settings.handler_timeout),
        "--poll-interval",
        str(settings.poll_interval),
        "--max-loop-lag",
        str(settings.max_loop_lag),
        *(["--enable-debug"] if settings.enable_debug else []),
        *([] if settings.watch else ["--no-watch"]),
        *(["--tls-cert", str(settings.tls_cert)] if settings.tls_cert else []),
        *(["--tls-key", str(settings.tls_key)] if settings.tls_key else []),
        *(["--tls-client-ca", str(settings.tls_client_ca)] if settings.tls_client_ca else []),
        "--ratelimit-headers",
        settings.ratelimit_headers,
        *(["--ratelimit-merge-domains"] if settings.ratelimit_merge_domains else []),
        *(["--ratelimit-shadow-mode"] if settings.ratelimit_shadow_mode else []),
        *(["--ratelimit-epoch-windows"] if settings.ratelimit_epoch_windows else []),
        *(["--ratelimit-quota-mode"] if settings.ratelimit_quota_mode else []),
        *(["--ratelimit-dynamic-metadata"] if settings.ratelimit_dynamic_metadata else []),
        "--ratelimit-near-limit-ratio",
        str(settings.ratelimit_near_limit_ratio),
        "--ratelimit-max-stat-keys",
        str(settings.ratelimit_max_stat_keys),
        "--authz-dedup-header",
        settings.authz_dedup_header,
        "--max-message-bytes",
        str(settings.max_message_bytes),
        "--max-concurrent-streams",
        str(settings.max_concurrent_streams),
        "--check-cache-size",
        str(settings.check_cache_size),
        "--check-cache-bytes",
        str(settings.check_cache_bytes),
        "--max-series",
        str(settings.max_series),
        "--max-quota-bucket-bytes",
        str(settings.max_quota_bucket_bytes),
        "--max-config-nodes",
        str(settings.max_config_nodes),
        "--admin-timeout",
        str(settings.admin_timeout),
        "--admin-max-connections",
        str(settings.admin_max_connections),
        *(
            item
            for name, _ in LIMIT_FLAGS
            for item in ("--" + name.replace("_", "-"), str(getattr(settings.limits, name)))
        ),
        "--cel-libraries",
        ",".join(settings.cel_libraries) or "none",
    ]


def run_workers(settings: Settings, argv: Sequence[str]) -> int:
    """Start the workers, forward signals, and exit with the worst worker status."""
    del argv
    try:
        ensure_free(settings.address)
    except OSError as err:
        logger.error("start-up failed: %s", err.strerror)
        return 1
    procs = [subprocess.Popen(worker_argv(settings, k)) for k in range(settings.workers)]

    def forward(signum: int, frame: FrameType | None) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    codes = []
    for proc in procs:
        while True:
            try:
                codes.append(proc.wait())
                break
            except KeyboardInterrupt:
                time.sleep(0.01)
    return max(codes, default=0)
