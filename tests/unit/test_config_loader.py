"""Loading config directories: resources, names, namespaces, dialects, files and line numbers."""

from __future__ import annotations

import dataclasses
import datetime
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from mixer.attributes.bag import Bag, StringMap
from mixer.config import (
    ConfigProblem,
    FieldProgram,
    HeaderOperation,
    Location,
    Snapshot,
    StringMatch,
    check_config,
    default_vocabulary,
    load_config,
    validate_directory,
)
from mixer.errors import ConfigError
from mixer.expr import Program
from tests.unit.config_helpers import TEST_ADAPTERS, problems_of, write

DENY_LABEL = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata:
  name: denyhandler
  namespace: istio-system
spec:
  compiledAdapter: denier
  params:
    status:
      code: 7
      message: Not allowed
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata:
  name: denyrequest
  namespace: istio-system
spec:
  compiledTemplate: checknothing
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: denyreviews
  namespace: istio-system
spec:
  match: destination.labels["app"] == "ratings" && source.labels["version"] == "v3"
  actions:
  - handler: denyhandler
    instances: [ denyrequest ]
"""


def load(directory: Path) -> Snapshot:
    return load_config(directory, TEST_ADAPTERS)


def program_at(programs: Mapping[str, FieldProgram], *keys: str) -> Program:
    """The compiled program of a (nested) instance field."""
    node: FieldProgram | Mapping[str, FieldProgram] = programs
    for key in keys:
        assert isinstance(node, Mapping)
        node = node[key]
    assert isinstance(node, Program)
    return node


def test_new_style_handler_instance_and_rule_load_into_a_snapshot(tmp_path: Path) -> None:
    write(tmp_path, "deny.yaml", DENY_LABEL)
    snapshot = load(tmp_path)

    handler = snapshot.handlers["denyhandler.handler.istio-system"]
    assert handler.adapter == "denier"
    assert handler.kind == "handler"
    assert handler.params == {"status": {"code": 7, "message": "Not allowed"}}
    assert handler.adapter_params == {"code": 7, "message": "Not allowed"}
    assert handler.source == Location(f"{tmp_path}/deny.yaml", 1)

    instance = snapshot.instances["denyrequest.instance.istio-system"]
    assert (instance.template, instance.short_name, instance.params) == (
        "checknothing",
        "denyrequest",
        {},
    )

    (rule,) = snapshot.rules
    assert rule.name == "denyreviews.rule.istio-system"
    assert rule.source.line == 21
    assert rule.dialect == "mixer"
    assert rule.match.result_type == "BOOL"
    assert not rule.always_matches
    (action,) = rule.actions
    assert action.handler == "denyhandler.handler.istio-system"
    assert action.instances == ("denyrequest.instance.istio-system",)


def test_compiled_match_evaluates_against_a_bag(tmp_path: Path) -> None:
    write(tmp_path, "deny.yaml", DENY_LABEL)
    (rule,) = load(tmp_path).rules
    v3_to_ratings = Bag(
        {
            "destination.labels": StringMap({"app": "ratings"}),
            "source.labels": StringMap({"version": "v3"}),
        }
    )
    v2_to_ratings = Bag(
        {
            "destination.labels": StringMap({"app": "ratings"}),
            "source.labels": StringMap({"version": "v2"}),
        }
    )
    assert rule.match.evaluate(v3_to_ratings) is True
    assert rule.match.evaluate(v2_to_ratings) is False


def test_legacy_per_adapter_and_per_template_kinds(tmp_path: Path) -> None:
    write(
        tmp_path,
        "legacy.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: denier
        metadata:
          name: handler
        spec:
          status:
            code: 7
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: checknothing
        metadata:
          name: denyrequest
        spec:
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: metric
        metadata:
          name: requestcount
        spec:
          value: "1"
          dimensions:
            code: response.code | 200
          monitoredResourceType: '"UNSPECIFIED"'
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata:
          name: deny
        spec:
          actions:
          - handler: handler.denier
            instances: [ denyrequest.checknothing ]
        """,
    )
    snapshot = load(tmp_path)
    assert snapshot.handlers["handler.denier.istio-system"].adapter == "denier"
    assert snapshot.handlers["handler.denier.istio-system"].kind == "denier"
    assert snapshot.instances["denyrequest.checknothing.istio-system"].template == "checknothing"
    metric = snapshot.instances["requestcount.metric.istio-system"]
    assert metric.params == {
        "value": '"1"'.strip('"'),
        "dimensions": {"code": "response.code | 200"},
        "monitored_resource_type": '"UNSPECIFIED"',
    }
    (rule,) = snapshot.rules
    assert rule.always_matches
    assert rule.actions[0].handler == "handler.denier.istio-system"
    assert rule.actions[0].instances == ("denyrequest.checknothing.istio-system",)


def test_bare_name_finds_a_unique_legacy_kind_in_the_rule_namespace(tmp_path: Path) -> None:
    write(
        tmp_path,
        "legacy.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: denier
        metadata: {name: denyall}
        spec: {}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: checknothing
        metadata: {name: denyrequest}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {name: deny}
        spec:
          actions: [{handler: denyall, instances: [denyrequest]}]
        """,
    )
    action = load(tmp_path).rules[0].actions[0]
    assert action.handler == "denyall.denier.istio-system"
    assert action.instances == ("denyrequest.checknothing.istio-system",)


RULE_IN_FOO = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: h, namespace: istio-system}}
spec: {{compiledAdapter: denier}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: i, namespace: foo}}
spec: {{compiledTemplate: checknothing}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: r, namespace: foo}}
spec:
  actions:
  - handler: {handler}
    instances: [{instance}]
"""


@pytest.mark.parametrize(
    "handler_ref",
    ["h.handler.istio-system", "h.istio-system"],
    ids=["fqn", "name.namespace"],
)
@pytest.mark.parametrize("instance_ref", ["i", "i.instance", "i.foo", "i.instance.foo"])
def test_reference_forms_resolve_like_mixer(
    tmp_path: Path, handler_ref: str, instance_ref: str
) -> None:
    write(tmp_path, "r.yaml", RULE_IN_FOO.format(handler=handler_ref, instance=instance_ref))
    (rule,) = load(tmp_path).rules
    assert rule.namespace == "foo"
    assert rule.actions[0].handler == "h.handler.istio-system"
    assert rule.actions[0].instances == ("i.instance.foo",)


def test_bare_name_does_not_reach_into_another_namespace(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", RULE_IN_FOO.format(handler="h", instance="i"))
    assert problems_of(tmp_path) == [
        "r.yaml:16: rule/r: spec.actions[0].handler: handler 'h' not found "
        "(looked for h.handler.foo)"
    ]


def test_missing_namespace_defaults_and_the_default_can_be_changed(tmp_path: Path) -> None:
    write(tmp_path, "deny.yaml", DENY_LABEL.replace("  namespace: istio-system\n", ""))
    assert set(load(tmp_path).handlers) == {"denyhandler.handler.istio-system"}
    snapshot = load_config(tmp_path, TEST_ADAPTERS, default_namespace="mesh-config")
    assert set(snapshot.handlers) == {"denyhandler.handler.mesh-config"}
    assert snapshot.rules[0].name == "denyreviews.rule.mesh-config"
    assert snapshot.default_namespace == "mesh-config"


CEL_RULE = """
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata:
  name: r
  annotations:
    policy.istio.io/lang: {lang}
spec:
  match: {match}
  actions: [{{handler: h, instances: [i]}}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: h}}
spec: {{compiledAdapter: denier}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: i}}
spec: {{compiledTemplate: checknothing}}
"""


def test_cel_annotation_compiles_the_rule_as_cel(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", CEL_RULE.format(lang="CEL", match="'!(request.path == \"/x\")'"))
    (rule,) = load(tmp_path).rules
    assert rule.dialect == "cel"
    assert rule.match.dialect == "cel"
    assert rule.match.evaluate(Bag({"request.path": "/y"})) is True


def test_without_the_annotation_cel_only_syntax_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", CEL_RULE.format(lang="CEXL", match="'!(request.path == \"/x\")'"))
    (problem,) = problems_of(tmp_path)
    assert problem.startswith("r.yaml:8: rule/r: spec.match: operator '!' is not supported")
    assert problem.endswith("""in expression '!(request.path == "/x")'""")


def test_compat_annotation_selects_the_compat_dialect(tmp_path: Path) -> None:
    write(
        tmp_path, "r.yaml", CEL_RULE.format(lang="COMPAT", match='\'(request.path | "") == "/x"\'')
    )
    (rule,) = load(tmp_path).rules
    assert (rule.dialect, rule.match.dialect) == ("compat", "compat")


def test_instance_annotation_selects_its_own_dialect(tmp_path: Path) -> None:
    write(
        tmp_path,
        "i.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata:
          name: requestcount
          annotations: {policy.istio.io/lang: CEL}
        spec:
          compiledTemplate: metric
          params:
            value: request.size
            dimensions:
              path: 'request.path.startsWith("/api") ? "api" : "other"'
        """,
    )
    instance = load(tmp_path).instances["requestcount.instance.istio-system"]
    assert instance.dialect == "cel"
    dimension = program_at(instance.programs, "dimensions", "path")
    assert dimension.evaluate(Bag({"request.path": "/api/v1"})) == "api"


def test_files_load_recursively_in_sorted_order_and_hidden_ones_are_skipped(
    tmp_path: Path,
) -> None:
    rule = textwrap.dedent(
        """
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {{name: {name}}}
        spec:
          actions: [{{handler: h, instances: [i]}}]
        """
    ).lstrip()
    write(tmp_path, "b.yaml", rule.format(name="second"))
    write(tmp_path, "a/z.yml", rule.format(name="first"))
    write(tmp_path, "c/d.yaml", "---\n---\n# only a comment\n---\n" + rule.format(name="third"))
    write(tmp_path, ".github/workflows/ci.yml", "on: push\njobs: {}\n")
    write(tmp_path, "notes.txt", "not: config\n")
    write(
        tmp_path,
        "h.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata: {name: h}
        spec: {compiledAdapter: denier}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {name: i}
        spec: {compiledTemplate: checknothing}
        """,
    )
    snapshot = load(tmp_path)
    assert [rule.short_name for rule in snapshot.rules] == ["first", "second", "third"]
    assert snapshot.rules[2].source == Location(f"{tmp_path}/c/d.yaml", 5)


def test_problem_lines_point_at_the_offending_key_in_later_documents(tmp_path: Path) -> None:
    write(
        tmp_path,
        "many.yaml",
        DENY_LABEL
        + """
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata:
  name: second
spec:
  compiledTemplate: metric
  params:
    value: "1"
    dimensions:
      good: source.name | "x"
      bad: source.nmae | "x"
""",
    )
    assert problems_of(tmp_path) == [
        "many.yaml:43: instance/second: spec.params.dimensions.bad: unknown attribute "
        """'source.nmae' at column 1 in expression 'source.nmae | "x"'"""
    ]


def test_param_error_paths_map_to_the_line_of_the_param(tmp_path: Path) -> None:
    write(
        tmp_path,
        "h.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata:
          name: denyhandler
        spec:
          compiledAdapter: denier
          params:
            status:
              message: nope
              code: 99
        """,
    )
    assert problems_of(tmp_path) == [
        "h.yaml:10: handler/denyhandler: spec.params.status.code: "
        "must be a gRPC code from 0 to 16, got 99"
    ]


def test_camel_case_and_snake_case_keys_are_interchangeable(tmp_path: Path) -> None:
    write(
        tmp_path,
        "snake.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata: {name: h}
        spec: {compiled_adapter: denier}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {name: i}
        spec: {compiled_template: checknothing}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {name: m}
        spec:
          compiledTemplate: metric
          params: {value: "1", monitoredResourceType: '"A"'}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {name: n}
        spec:
          compiledTemplate: metric
          params: {value: "1", monitored_resource_type: '"A"'}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {name: r}
        spec:
          actions: [{handler: h, instances: [i]}]
          request_header_operations: [{name: x-a, values: ['"1"']}]
          responseHeaderOperations: [{name: x-b, operation: REMOVE}]
        """,
    )
    snapshot = load(tmp_path)
    for name in ("m", "n"):
        params = snapshot.instances[f"{name}.instance.istio-system"].params
        assert params["monitored_resource_type"] == '"A"'
    (rule,) = snapshot.rules
    assert [op.name for op in rule.request_header_operations] == ["x-a"]
    assert rule.response_header_operations[0].operation is HeaderOperation.REMOVE


def test_instance_fields_keep_their_shape_as_text_and_programs(tmp_path: Path) -> None:
    write(
        tmp_path,
        "log.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: logentry
        metadata: {name: accesslog}
        spec:
          severity: '"Info"'
          timestamp: request.time | timestamp("2017-01-01T00:00:00Z")
          variables:
            code: response.code | 0
            mtls: true
            ratio: 0.5
            latency: response.duration | "0ms"
        """,
    )
    instance = load(tmp_path).instances["accesslog.logentry.istio-system"]
    assert instance.params["variables"] == {
        "code": "response.code | 0",
        "mtls": "true",
        "ratio": "0.5",
        "latency": 'response.duration | "0ms"',
    }
    empty = Bag({})
    latency = program_at(instance.programs, "variables", "latency")
    assert latency.evaluate(empty) == datetime.timedelta(0)
    assert program_at(instance.programs, "variables", "mtls").evaluate(empty) is True
    assert program_at(instance.programs, "severity").evaluate(empty) == "Info"


def test_header_operations_and_sampling(tmp_path: Path) -> None:
    write(
        tmp_path,
        "r.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {name: r}
        spec:
          requestHeaderOperations:
          - name: x-user
            values:
            - request.headers["user"] | "anonymous"
            operation: APPEND
          - name: x-debug
            operation: 1
          sampling:
            random:
              attributeExpression: request.id
              percentSampled: {numerator: 25, denominator: TEN_THOUSAND}
            rateLimit:
              samplingDuration: 10s
              maxUnsampledEntries: 100
              samplingRate: 5
        """,
    )
    (rule,) = load(tmp_path).rules
    assert rule.actions == ()
    op, remove = rule.request_header_operations
    assert (remove.name, remove.operation, remove.values) == ("x-debug", HeaderOperation.REMOVE, ())
    assert (op.name, op.operation, op.values) == (
        "x-user",
        HeaderOperation.APPEND,
        ('request.headers["user"] | "anonymous"',),
    )
    assert op.programs[0].evaluate(Bag({})) == "anonymous"
    assert rule.sampling is not None
    random = rule.sampling.random
    assert random is not None
    assert (random.numerator, random.denominator, random.attribute_expression) == (
        25,
        10_000,
        "request.id",
    )
    rate_limit = rule.sampling.rate_limit
    assert rate_limit is not None
    assert rate_limit.sampling_duration == datetime.timedelta(seconds=10)
    assert (rate_limit.max_unsampled_entries, rate_limit.sampling_rate) == (100, 5)


def test_attribute_manifests_replace_the_default_vocabulary(tmp_path: Path) -> None:
    write(
        tmp_path,
        "attributes.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: attributemanifest
        metadata: {name: mine}
        spec:
          attributes:
            tenant.id: {valueType: STRING, description: the tenant}
            tenant.tier: {valueType: INT64}
        """,
    )
    write(
        tmp_path,
        "r.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {name: r}
        spec:
          match: tenant.tier > 2 && source.name == "x"
          requestHeaderOperations: [{name: x-tenant, values: [tenant.id]}]
        """,
    )
    assert problems_of(tmp_path) == [
        "r.yaml:5: rule/r: spec.match: unknown attribute 'source.name' at column 20 in "
        """expression 'tenant.tier > 2 && source.name == "x"'"""
    ]
    write(
        tmp_path, "r.yaml", (tmp_path / "r.yaml").read_text().replace(' && source.name == "x"', "")
    )
    snapshot = load(tmp_path)
    assert snapshot.vocabulary == {"tenant.id": "STRING", "tenant.tier": "INT64"}
    (manifest,) = snapshot.attribute_manifests
    assert manifest.attributes["tenant.id"].description == "the tenant"


def test_a_directory_without_manifests_uses_istio_1_4_vocabulary(tmp_path: Path) -> None:
    write(tmp_path, "deny.yaml", DENY_LABEL)
    snapshot = load(tmp_path)
    assert snapshot.vocabulary == default_vocabulary()
    assert snapshot.vocabulary["destination.labels"] == "STRING_MAP"
    assert snapshot.attribute_manifests == ()


def test_kubernetes_resources_of_other_api_groups_are_skipped_with_a_note(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        "mixed.yaml",
        DENY_LABEL
        + """
---
apiVersion: v1
kind: Service
metadata: {name: prometheusadapter}
spec:
  ports: [{name: http, port: 8080}]
---
apiVersion: config.istio.io/v1alpha2
kind: HTTPAPISpec
metadata: {name: petstore}
spec: {attributes: {}}
""",
    )
    report = check_config(tmp_path, TEST_ADAPTERS)
    assert report.problems == ()
    assert report.notes == (
        f"{tmp_path}/mixed.yaml:33: Service/prometheusadapter: ignored: apiVersion v1 is not "
        "Mixer config",
        f"{tmp_path}/mixed.yaml:39: HTTPAPISpec/petstore: ignored: client-side config for the "
        "proxy, not for Mixer",
    )
    assert report.snapshot is not None
    assert report.snapshot.notes == report.notes
    assert len(report.snapshot.rules) == 1


def test_rate_limit_config_files_are_recognised_by_their_domain(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ratelimit.yaml",
        """
        domain: edge
        descriptors:
          - key: remote_address
            rate_limit: {unit: second, requests_per_unit: 10}
          - key: tenant
            value: acme
            shadow_mode: true
            descriptors:
              - key: path
                value: /export
                rate_limit: {unlimited: true}
        """,
    )
    (config,) = load(tmp_path).rate_limit_configs
    assert config.domain == "edge"
    first, second = config.descriptors
    assert first.key == "remote_address"
    assert first.rate_limit is not None
    assert (first.rate_limit.unit, first.rate_limit.requests_per_unit) == ("second", 10)
    assert (second.key, second.value, second.shadow_mode, second.rate_limit) == (
        "tenant",
        "acme",
        True,
        None,
    )
    (nested,) = second.descriptors
    assert nested.rate_limit is not None and nested.rate_limit.unlimited


def test_quota_spec_and_binding(tmp_path: Path) -> None:
    write(
        tmp_path,
        "quota.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: instance
        metadata: {name: requestcount}
        spec:
          compiledTemplate: quota
          params:
            dimensions: {source: source.name | "unknown"}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: QuotaSpec
        metadata: {name: request-count}
        spec:
          rules:
          - match:
            - clause:
                request.path: {prefix: /api}
                request.method: {exact: GET}
            quotas:
            - {quota: RequestCount, charge: 2}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: QuotaSpecBinding
        metadata: {name: request-count, namespace: default}
        spec:
          quotaSpecs: [{name: request-count, namespace: istio-system}]
          services: [{name: productpage}, {service: "*"}]
        """,
    )
    snapshot = load(tmp_path)
    (spec,) = snapshot.quota_specs
    (rule,) = spec.rules
    assert rule.match[0]["request.path"] == StringMatch("prefix", "/api")
    assert (rule.quotas[0].quota, rule.quotas[0].charge) == ("RequestCount", 2)
    (binding,) = snapshot.quota_spec_bindings
    assert binding.namespace == "default"
    assert [service.name or service.service for service in binding.services] == [
        "productpage",
        "*",
    ]
    assert (binding.quota_specs[0].name, binding.quota_specs[0].namespace) == (
        "request-count",
        "istio-system",
    )


def test_load_config_raises_config_error_listing_every_problem(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        DENY_LABEL.replace("denyhandler\n    instances", "nohandler\n    instances"),
    )
    write(
        tmp_path, "b.yaml", DENY_LABEL.replace("compiledAdapter: denier", "compiledAdapter: nope")
    )
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    # Sorted by file and line, whichever phase of checking found them.
    assert caught.value.errors == [
        f"{tmp_path}/a.yaml:29: rule/denyreviews: spec.actions[0].handler: handler 'nohandler' "
        "not found (looked for nohandler.handler.istio-system)",
        f"{tmp_path}/b.yaml:4: handler/denyhandler: metadata.name: denyhandler.handler."
        f"istio-system is already defined at {tmp_path}/a.yaml:1",
        f"{tmp_path}/b.yaml:7: handler/denyhandler: spec.compiledAdapter: adapter 'nope' is "
        "not supported",
        f"{tmp_path}/b.yaml:16: instance/denyrequest: metadata.name: denyrequest.instance."
        f"istio-system is already defined at {tmp_path}/a.yaml:13",
        f"{tmp_path}/b.yaml:24: rule/denyreviews: metadata.name: denyreviews.rule.istio-system "
        f"is already defined at {tmp_path}/a.yaml:21",
    ]
    assert [p.line for p in validate_directory(tmp_path, TEST_ADAPTERS)] == [29, 4, 7, 16, 24]


def test_a_reference_to_a_rejected_resource_is_not_reported_again(tmp_path: Path) -> None:
    write(
        tmp_path,
        "deny.yaml",
        DENY_LABEL.replace("compiledAdapter: denier", "compiledAdapter: fluentd"),
    )
    report = check_config(tmp_path, TEST_ADAPTERS)
    assert [problem.message for problem in report.problems] == [
        "adapter 'fluentd' is not supported"
    ]
    assert report.snapshot is None


def test_snapshot_and_its_specs_are_immutable(tmp_path: Path) -> None:
    write(tmp_path, "deny.yaml", DENY_LABEL)
    snapshot = load(tmp_path)
    handler = snapshot.handlers["denyhandler.handler.istio-system"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        handler.adapter = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        handler.params["status"]["code"] = 8  # type: ignore[index]
    with pytest.raises(TypeError):
        snapshot.handlers["x"] = handler  # type: ignore[index]
    assert dataclasses.replace(snapshot, revision="abc123").revision == "abc123"


def test_handler_signature_depends_on_adapter_and_params_only(tmp_path: Path) -> None:
    write(tmp_path, "a/deny.yaml", DENY_LABEL)
    write(tmp_path, "b/deny.yaml", "# moved down\n" + DENY_LABEL)
    write(tmp_path, "c/deny.yaml", DENY_LABEL.replace("code: 7", "code: 16"))
    a, b, c = (load(tmp_path / name).handlers["denyhandler.handler.istio-system"] for name in "abc")
    assert a.source.line != b.source.line
    assert a.signature == b.signature
    assert a.signature != c.signature


def test_a_missing_directory_is_one_problem(tmp_path: Path) -> None:
    problems = validate_directory(tmp_path / "nope", TEST_ADAPTERS)
    assert [str(problem) for problem in problems] == [f"{tmp_path}/nope: not a directory"]


def test_an_empty_directory_is_a_valid_empty_config_with_a_note(tmp_path: Path) -> None:
    report = check_config(tmp_path, TEST_ADAPTERS)
    assert report.snapshot is not None
    assert (report.snapshot.rules, dict(report.snapshot.handlers)) == ((), {})
    assert report.notes == (f"{tmp_path}: no *.yaml or *.yml files",)


def test_problem_text_and_json_forms() -> None:
    problem = ConfigProblem("rules/deny.yaml", 12, "rule/deny", "spec.match", "bad")
    assert str(problem) == "rules/deny.yaml:12: rule/deny: spec.match: bad"
    assert str(ConfigProblem("rules/x.yaml", 3, "", "", "invalid YAML: oops")) == (
        "rules/x.yaml:3: invalid YAML: oops"
    )
    assert problem.to_dict() == {
        "path": "rules/deny.yaml",
        "line": 12,
        "resource": "rule/deny",
        "field": "spec.match",
        "message": "bad",
    }


def test_message_fields_of_the_authorization_template_nest(tmp_path: Path) -> None:
    write(
        tmp_path,
        "authz.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: authorization
        metadata: {name: requestcontext}
        spec:
          subject:
            user: source.principal | ""
            properties:
              app: source.labels["app"] | ""
          action:
            namespace: destination.namespace | "default"
            method: request.method | ""
        """,
    )
    instance = load(tmp_path).instances["requestcontext.authorization.istio-system"]
    assert instance.params == {
        "subject": {
            "user": 'source.principal | ""',
            "properties": {"app": 'source.labels["app"] | ""'},
        },
        "action": {
            "namespace": 'destination.namespace | "default"',
            "method": 'request.method | ""',
        },
    }
    app = program_at(instance.programs, "subject", "properties", "app")
    assert app.evaluate(Bag({"source.labels": StringMap({"app": "reviews"})})) == "reviews"


def test_attribute_bindings_of_a_generating_template_are_kept_as_text(tmp_path: Path) -> None:
    write(
        tmp_path,
        "kube.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: kubernetes
        metadata: {name: attributes}
        spec:
          source_uid: source.uid | ""
          destination_port: destination.port | 0
          attribute_bindings:
            source.name: $out.source_pod_name | "unknown"
        """,
    )
    instance = load(tmp_path).instances["attributes.kubernetes.istio-system"]
    assert instance.template == "kubernetes"
    assert set(instance.programs) == {"source_uid", "destination_port"}
    assert instance.attribute_bindings == {"source.name": '$out.source_pod_name | "unknown"'}


def test_a_handler_may_name_its_adapter_with_adapter_alone(tmp_path: Path) -> None:
    write(
        tmp_path,
        "h.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata: {name: one}
        spec: {adapter: denier}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: handler
        metadata: {name: two}
        spec: {adapter: denier, compiledAdapter: denier}
        """,
    )
    handlers = load(tmp_path).handlers
    assert [h.adapter for h in handlers.values()] == ["denier", "denier"]


def test_a_yaml_boolean_match_reads_as_the_expression(tmp_path: Path) -> None:
    write(
        tmp_path,
        "r.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: rule
        metadata: {name: r}
        spec:
          match: false
          requestHeaderOperations: [{name: x-a, values: ['"1"']}]
        """,
    )
    (rule,) = load(tmp_path).rules
    assert rule.match_text == "false"
    assert rule.match.evaluate(Bag({})) is False


def test_yaml_anchors_and_merge_keys_work_and_keep_line_numbers(tmp_path: Path) -> None:
    write(
        tmp_path,
        "anchors.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: metric
        metadata: {name: requestcount}
        spec:
          value: "1"
          dimensions: &dims
            source: source.name | "unknown"
          monitored_resource_dimensions:
            <<: *dims
            destination: destination.nmae | "unknown"
        """,
    )
    assert problems_of(tmp_path) == [
        "anchors.yaml:10: metric/requestcount: spec.monitored_resource_dimensions.destination: "
        "unknown attribute 'destination.nmae' at column 1 in expression "
        """'destination.nmae | "unknown"'"""
    ]
    write(tmp_path, "anchors.yaml", (tmp_path / "anchors.yaml").read_text().replace("nmae", "name"))
    instance = load(tmp_path).instances["requestcount.metric.istio-system"]
    assert instance.params["monitored_resource_dimensions"] == {
        "source": 'source.name | "unknown"',
        "destination": 'destination.name | "unknown"',
    }


def test_a_rate_limit_domain_may_be_configured_once(tmp_path: Path) -> None:
    config = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: day}\n"
    write(tmp_path, "a.yaml", config)
    write(tmp_path, "b.yaml", config)
    assert problems_of(tmp_path) == [
        f"b.yaml:1: ratelimit/edge: domain: duplicate domain 'edge' (also at {tmp_path}/a.yaml:1)"
    ]


def test_quota_charge_defaults_to_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        "q.yaml",
        """
        apiVersion: config.istio.io/v1alpha2
        kind: quota
        metadata: {name: requestcount}
        spec: {dimensions: {source: source.name | "unknown"}}
        ---
        apiVersion: config.istio.io/v1alpha2
        kind: QuotaSpec
        metadata: {name: request-count}
        spec:
          rules: [{quotas: [{quota: requestcount}]}]
        """,
    )
    (spec,) = load(tmp_path).quota_specs
    assert spec.rules[0].quotas[0].charge == 1
    assert spec.rules[0].match == ()


def test_a_configmap_style_mount_is_read_once_through_its_symlinks(tmp_path: Path) -> None:
    # Kubernetes mounts a ConfigMap as `..<timestamp>/` + `..data -> ..<timestamp>` + one
    # `name -> ..data/name` link per file, and swaps `..data` on update.
    write(tmp_path, "..2024_01_01/deny.yaml", DENY_LABEL)
    (tmp_path / "..data").symlink_to("..2024_01_01")
    (tmp_path / "deny.yaml").symlink_to("..data/deny.yaml")
    snapshot = load(tmp_path)
    assert len(snapshot.rules) == 1
    assert snapshot.rules[0].source.path == f"{tmp_path}/deny.yaml"
