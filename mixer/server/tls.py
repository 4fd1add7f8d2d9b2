"""TLS and mutual TLS for the gRPC port, with certificates reloaded from disk when they change.

cert-manager and Istio rotate certificates by rewriting files; gRPC asks `CertificateReloader`
for a new configuration at each handshake, and it answers with one only when a file changed, so
rotation takes effect without a restart and costs one `stat` per file per handshake.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc

logger = logging.getLogger(__name__)


class CertificateReloader:
    """Reads the key, certificate chain and (for mTLS) client CA bundle; re-reads on change."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self._files = [p for p in (cert, key, client_ca) if p is not None]
        self._cert = cert
        self._key = key
        self._client_ca = client_ca
        self._stamp = self._stamps()
        self.initial = self._load()

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in self._files:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        ca = self._client_ca.read_bytes() if self._client_ca is not None else None
        return grpc.ssl_server_certificate_configuration(
            [(self._key.read_bytes(), self._cert.read_bytes())], root_certificates=ca
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when a file changed since the last one, else None."""
        try:
            stamp = self._stamps()
            if stamp == self._stamp:
                return None
            config = self._load()
        except OSError as exc:
            # Mid-rotation (a file briefly missing): keep serving with the current certificate.
            logger.warning("certificate reload skipped: %s", exc)
            return None
        self._stamp = stamp
        logger.info("TLS certificates reloaded", extra={"cert": str(self._cert)})
        return config

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials; client certificates are required when a client CA is set."""
        # gRPC documents None from the fetcher as "unchanged"; the type stubs do not.
        return grpc.dynamic_ssl_server_credentials(
            self.initial,
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=self._client_ca is not None,
        )
