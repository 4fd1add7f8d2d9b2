"""`mixer.redact.mask_credentials`: passwords out, everything else kept."""

from __future__ import annotations

import pytest

from mixer.redact import mask_credentials


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://admin:S3cret@host:6379/0", "redis://admin:***@host:6379/0"),
        ("rediss://:S3cret@host:6380", "rediss://:***@host:6380"),
        ("redis://S3cret@host", "redis://***@host"),
        ("redis+cluster://u:S3cret@a:1,b:2", "redis+cluster://u:***@a:1,b:2"),
        (
            "bad port in 'redis://admin:S3cret@127.0.0.1:notaport'",
            "bad port in 'redis://admin:***@127.0.0.1:notaport'",
        ),
        ('{"url": "https://u:p@w@example.com/x"}', '{"url": "https://u:***@example.com/x"}'),
        ("a redis://h:1 and http://u:S3cret@h/p", "a redis://h:1 and http://u:***@h/p"),
        ("user@example.com wrote redis://h:1", "user@example.com wrote redis://h:1"),
        ("no url here", "no url here"),
    ],
)
def test_masks_the_password_of_every_url(text: str, masked: str) -> None:
    assert mask_credentials(text) == masked
    assert mask_credentials(masked) == masked


_QUOTAS = [{"name": "q", "maxAmount": 1, "validDuration": "1s"}]


def test_adapter_param_errors_mask_the_url_they_quote() -> None:
    from adapters.base import ParamError
    from adapters.redisquota.params import parse_params

    with pytest.raises(ParamError) as err:
        parse_params(
            {"redisServerUrl": "redis://admin:S3cret@127.0.0.1:notaport", "quotas": _QUOTAS}
        )
    assert str(err.value) == "redisServerUrl: bad port in 'redis://admin:***@127.0.0.1:notaport'"


def test_mixer_validate_masks_what_it_prints(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    from mixer.cli import main

    config = Path(str(tmp_path))
    (config / "h.yaml").write_text(
        "apiVersion: config.istio.io/v1alpha2\nkind: handler\n"
        "metadata: {name: r, namespace: istio-system}\n"
        "spec:\n  compiledAdapter: redisquota\n"
        "  params:\n    redisServerUrl: 'redis://admin:S3cret@h:bad'\n"
        "    quotas: [{name: q, maxAmount: 1, validDuration: 1s}]\n"
    )
    for fmt in ("text", "json"):
        assert main(["validate", str(config), "--format", fmt]) == 1
        out = capsys.readouterr()
        assert "admin:***@h:bad" in out.out
        assert "S3cret" not in out.out + out.err
