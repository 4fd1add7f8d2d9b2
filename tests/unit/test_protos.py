import subprocess
import sys

from mixer.v1 import mixer_pb2
from tests.mixer_process import ROOT


def test_generated_code_matches_protos() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "protos/generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mixer_service_paths_and_field_numbers() -> None:
    service = mixer_pb2.DESCRIPTOR.services_by_name["Mixer"]
    assert service.full_name == "istio.mixer.v1.Mixer"
    assert [m.name for m in service.methods] == ["Check", "Report"]
    check = mixer_pb2.CheckRequest.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in check.items()} == {
        "attributes": 1,
        "global_word_count": 2,
        "deduplication_id": 3,
        "quotas": 4,
    }
    pre = mixer_pb2.CheckResponse.PreconditionResult.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in pre.items()} == {
        "status": 1,
        "valid_duration": 2,
        "valid_use_count": 3,
        "referenced_attributes": 5,
        "route_directive": 6,
    }
    qr = mixer_pb2.CheckResponse.QuotaResult.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in qr.items()} == {
        "valid_duration": 1,
        "granted_amount": 2,
        "referenced_attributes": 5,
        "status": 6,
    }
    rep = mixer_pb2.ReportRequest.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in rep.items()} == {
        "attributes": 1,
        "default_words": 2,
        "global_word_count": 3,
        "repeated_attributes_semantics": 4,
    }
    assert pre["status"].message_type.full_name == "google.rpc.Status"
