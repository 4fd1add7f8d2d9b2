"""Name handling: reference resolution as in Mixer, key styles, the dialect annotation."""

from __future__ import annotations

import pytest

from mixer.config.names import NameIndex, Resolution, camel, dialect_for, snake

HANDLERS = NameIndex(
    "handler",
    [
        ("deny", "handler", "istio-system"),
        ("deny", "handler", "foo"),
        ("legacy", "denier", "istio-system"),
        ("twice", "denier", "istio-system"),
        ("twice", "memquota", "istio-system"),
        ("both", "handler", "istio-system"),
        ("both", "denier", "istio-system"),
    ],
)


@pytest.mark.parametrize(
    ("ref", "namespace", "found"),
    [
        ("deny", "istio-system", "deny.handler.istio-system"),
        ("deny", "foo", "deny.handler.foo"),
        ("deny.handler", "foo", "deny.handler.foo"),
        ("deny.istio-system", "foo", "deny.handler.istio-system"),
        ("deny.handler.istio-system", "foo", "deny.handler.istio-system"),
        ("legacy.denier", "istio-system", "legacy.denier.istio-system"),
        ("legacy", "istio-system", "legacy.denier.istio-system"),
        ("legacy.istio-system", "foo", "legacy.denier.istio-system"),
        ("both", "istio-system", "both.handler.istio-system"),
        ("both.denier", "istio-system", "both.denier.istio-system"),
    ],
)
def test_references_resolve_to_fully_qualified_names(ref: str, namespace: str, found: str) -> None:
    assert HANDLERS.resolve(ref, namespace).found == found


def test_a_bare_name_is_looked_up_in_the_given_namespace_only() -> None:
    assert HANDLERS.resolve("legacy", "foo") == Resolution(None, ("legacy.handler.foo",))


def test_a_two_part_name_is_tried_as_name_kind_then_name_namespace() -> None:
    assert HANDLERS.resolve("deny.bar", "foo") == Resolution(
        None, ("deny.bar.foo", "deny.handler.bar")
    )


def test_a_bare_name_matching_two_legacy_kinds_is_ambiguous() -> None:
    assert HANDLERS.resolve("twice", "istio-system") == Resolution(
        None,
        ("twice.handler.istio-system",),
        ("twice.denier.istio-system", "twice.memquota.istio-system"),
    )


def test_an_unknown_fqn_is_not_found() -> None:
    assert HANDLERS.resolve("deny.handler.bar", "foo") == Resolution(None, ("deny.handler.bar",))


@pytest.mark.parametrize(
    ("written", "snake_key", "camel_key"),
    [
        ("compiledAdapter", "compiled_adapter", "compiledAdapter"),
        ("monitoredResourceType", "monitored_resource_type", "monitoredResourceType"),
        ("httpStatusCode", "http_status_code", "httpStatusCode"),
        ("value", "value", "value"),
        ("api_key", "api_key", "apiKey"),
    ],
)
def test_key_styles_convert_both_ways(written: str, snake_key: str, camel_key: str) -> None:
    assert snake(written) == snake_key
    assert camel(snake_key) == camel_key


@pytest.mark.parametrize(
    ("annotations", "dialect"),
    [
        ({}, "mixer"),
        ({"other": "CEL"}, "mixer"),
        ({"policy.istio.io/lang": "CEL"}, "cel"),
        ({"policy.istio.io/lang": "cel"}, "cel"),
        ({"policy.istio.io/lang": "COMPAT"}, "compat"),
        ({"policy.istio.io/lang": "CEXL"}, "mixer"),
    ],
)
def test_the_lang_annotation_selects_the_dialect(annotations: dict[str, str], dialect: str) -> None:
    assert dialect_for(annotations) == dialect


def test_an_unknown_lang_annotation_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ValueError, match="unknown expression language 'CELL'"):
        dialect_for({"policy.istio.io/lang": "CELL"})
