"""TLS and mutual TLS on the gRPC port: who is refused, who is served, rotation without restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from mixer.client import MixerClient
from tests.certs import Issued, issue, make_ca
from tests.mixer_process import MixerProcess

pytestmark = pytest.mark.integration

Start = Callable[..., MixerProcess]

SPIFFE = "spiffe://cluster.local/ns/default/sa/frontend"

ECHO_PRINCIPAL = """
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: echo, namespace: istio-system}
spec:
  requestHeaderOperations:
  - name: x-principal
    values: ['source.principal | "none"']
"""


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.server_ca = make_ca("server-ca")
        self.client_ca = make_ca("client-ca")
        server = issue(self.server_ca, "mixer", server=True)
        self.server_cert, self.server_key = server.write(directory, "server")
        self.client_ca_file = directory / "client-ca.crt"
        self.client_ca_file.write_bytes(self.client_ca.cert_pem)

    def credentials(self, client: Issued | None) -> grpc.ChannelCredentials:
        if client is None:
            return grpc.ssl_channel_credentials(root_certificates=self.server_ca.cert_pem)
        return grpc.ssl_channel_credentials(
            root_certificates=self.server_ca.cert_pem,
            private_key=client.key_pem,
            certificate_chain=client.cert_pem,
        )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def start_tls(start_mixer: Start, tmp_path: Path, pki: Pki, *, mutual: bool) -> MixerProcess:
    rules = tmp_path / "tls-rules"
    rules.mkdir()
    (rules / "echo.yaml").write_text(ECHO_PRINCIPAL)
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    trusted = issue(pki.client_ca, "frontend", spiffe=SPIFFE)
    if mutual:
        args += ["--tls-client-ca", str(pki.client_ca_file)]
    return start_mixer(rules, extra_args=args, credentials=pki.credentials(trusted))


def principal_seen(mixer: MixerProcess, creds: grpc.ChannelCredentials) -> str:
    channel = grpc.secure_channel(mixer.address, creds)
    with MixerClient(mixer.address, channel=channel, timeout=5) as client:
        ops = client.check({"request.path": "/"}).route_directive["request_header_operations"]
    values = [op["value"] for op in ops if op["name"] == "x-principal"]
    assert len(values) == 1
    return str(values[0])


def refused(mixer: MixerProcess, creds: grpc.ChannelCredentials) -> grpc.StatusCode:
    channel = grpc.secure_channel(mixer.address, creds)
    with (
        pytest.raises(grpc.RpcError) as err,
        MixerClient(mixer.address, channel=channel, timeout=5) as client,
    ):
        client.check({"request.path": "/"})
    code: grpc.StatusCode = err.value.code()
    return code


def test_tls_serves_clients_that_trust_the_server(
    start_mixer: Start, tmp_path: Path, pki: Pki
) -> None:
    mixer = start_tls(start_mixer, tmp_path, pki, mutual=False)
    assert principal_seen(mixer, pki.credentials(None)) == "none"
    with MixerClient(mixer.address, timeout=2) as plain, pytest.raises(grpc.RpcError):
        plain.check({})  # plaintext to a TLS port


def test_mtls_refuses_missing_untrusted_and_expired_certificates(
    start_mixer: Start, tmp_path: Path, pki: Pki
) -> None:
    mixer = start_tls(start_mixer, tmp_path, pki, mutual=True)
    assert refused(mixer, pki.credentials(None)) == grpc.StatusCode.UNAVAILABLE
    stranger = issue(make_ca("other-ca"), "intruder", spiffe="spiffe://evil/sa/x")
    assert refused(mixer, pki.credentials(stranger)) == grpc.StatusCode.UNAVAILABLE
    expired = issue(pki.client_ca, "old", spiffe=SPIFFE, expired=True)
    assert refused(mixer, pki.credentials(expired)) == grpc.StatusCode.UNAVAILABLE


def test_mtls_identity_becomes_source_principal(
    start_mixer: Start, tmp_path: Path, pki: Pki
) -> None:
    mixer = start_tls(start_mixer, tmp_path, pki, mutual=True)
    trusted = issue(pki.client_ca, "frontend", spiffe=SPIFFE)
    assert principal_seen(mixer, pki.credentials(trusted)) == SPIFFE
    no_san = issue(pki.client_ca, "batch-job")
    assert principal_seen(mixer, pki.credentials(no_san)) == "batch-job"


def test_rotated_certificate_files_take_effect_without_restart(
    start_mixer: Start, tmp_path: Path, pki: Pki
) -> None:
    mixer = start_tls(start_mixer, tmp_path, pki, mutual=True)
    new_ca = make_ca("client-ca-2")
    newcomer = issue(new_ca, "newcomer", spiffe="spiffe://cluster.local/ns/default/sa/new")
    assert refused(mixer, pki.credentials(newcomer)) == grpc.StatusCode.UNAVAILABLE
    # rotate: the client CA bundle now trusts both CAs, and the server gets a fresh certificate
    pki.client_ca_file.write_bytes(pki.client_ca.cert_pem + new_ca.cert_pem)
    issue(pki.server_ca, "mixer-rotated", server=True).write(pki.dir, "server")
    deadline = time.monotonic() + 5
    seen = ""
    while time.monotonic() < deadline:
        try:
            seen = principal_seen(mixer, pki.credentials(newcomer))
            break
        except grpc.RpcError:
            time.sleep(0.1)
    assert seen == "spiffe://cluster.local/ns/default/sa/new"
    assert mixer.proc is not None and mixer.proc.poll() is None  # same process
