"""Mixer's compiled-in templates: what each instance kind carries and when it is dispatched.

Field types use Mixer's ValueType names; ``VALUE`` accepts any type and ``MAP_VALUE`` is a
``map<string, Value>``. Types are checked against expressions at load time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final


class Variety(enum.Enum):
    """When an instance of a template is dispatched."""

    CHECK = "check"
    QUOTA = "quota"
    REPORT = "report"
    ATTRIBUTE_GENERATOR = "attribute_generator"

    # Members are singletons compared by identity, so identity hashing agrees with equality;
    # Enum's own __hash__ is Python code, and routing looks varieties up on every request.
    __hash__ = object.__hash__


@dataclass(frozen=True)
class Template:
    """A template: its name, variety and field types (field name -> ValueType name).

    An ATTRIBUTE_GENERATOR template also has `outputs`: the fields of what its handler returns,
    which an instance's ``attributeBindings`` read as ``$out.<field>``.
    """

    name: str
    variety: Variety
    fields: MappingProxyType[str, str]
    outputs: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def field_type(self, field: str) -> str | None:
        return self.fields.get(field)


def _t(name: str, variety: Variety, **fields: str) -> Template:
    return Template(name, variety, MappingProxyType(fields))


def _outputs(template: Template, **outputs: str) -> Template:
    return Template(template.name, template.variety, template.fields, MappingProxyType(outputs))


def _sides(**fields: str) -> dict[str, str]:
    return {f"{side}_{name}": t for side in ("source", "destination") for name, t in fields.items()}


# Istio's `adapter.template.kubernetes.OutputTemplate`, field for field.
_KUBERNETES_OUTPUTS = {
    **_sides(
        pod_uid="STRING",
        pod_ip="IP_ADDRESS",
        pod_name="STRING",
        labels="STRING_MAP",
        namespace="STRING",
        service_account_name="STRING",
        host_ip="IP_ADDRESS",
        workload_uid="STRING",
        workload_name="STRING",
        workload_namespace="STRING",
        owner="STRING",
    ),
    "destination_container_name": "STRING",
}


TEMPLATES: Final[MappingProxyType[str, Template]] = MappingProxyType(
    {
        t.name: t
        for t in (
            _t("checknothing", Variety.CHECK),
            _t("reportnothing", Variety.REPORT),
            _t("listentry", Variety.CHECK, value="VALUE"),
            _t(
                "apikey",
                Variety.CHECK,
                api="STRING",
                api_version="STRING",
                api_operation="STRING",
                api_key="STRING",
                timestamp="TIMESTAMP",
            ),
            _t(
                "authorization",
                Variety.CHECK,
                subject="SUBJECT",
                action="ACTION",
            ),
            _t("quota", Variety.QUOTA, dimensions="MAP_VALUE"),
            _t(
                "metric",
                Variety.REPORT,
                value="VALUE",
                dimensions="MAP_VALUE",
                monitored_resource_type="STRING",
                monitored_resource_dimensions="MAP_VALUE",
            ),
            _t(
                "logentry",
                Variety.REPORT,
                variables="MAP_VALUE",
                timestamp="TIMESTAMP",
                severity="STRING",
                monitored_resource_type="STRING",
                monitored_resource_dimensions="MAP_VALUE",
            ),
            _t(
                "tracespan",
                Variety.REPORT,
                trace_id="STRING",
                span_id="STRING",
                parent_span_id="STRING",
                span_name="STRING",
                start_time="TIMESTAMP",
                end_time="TIMESTAMP",
                span_tags="MAP_VALUE",
                http_status_code="INT64",
                client_span="BOOL",
                rewrite_client_span_id="BOOL",
                source_name="STRING",
                source_ip="IP_ADDRESS",
                destination_name="STRING",
                destination_ip="IP_ADDRESS",
                request_size="INT64",
                request_total_size="INT64",
                response_size="INT64",
                response_total_size="INT64",
                api_protocol="STRING",
            ),
            _t(
                "edge",
                Variety.REPORT,
                timestamp="TIMESTAMP",
                source_workload_namespace="STRING",
                source_workload_name="STRING",
                source_owner="STRING",
                source_uid="STRING",
                destination_workload_namespace="STRING",
                destination_workload_name="STRING",
                destination_owner="STRING",
                destination_uid="STRING",
                destination_service_namespace="STRING",
                destination_service_name="STRING",
                context_protocol="STRING",
                api_protocol="STRING",
            ),
            _outputs(
                _t(
                    "kubernetes",
                    Variety.ATTRIBUTE_GENERATOR,
                    source_uid="STRING",
                    source_ip="IP_ADDRESS",
                    destination_uid="STRING",
                    destination_ip="IP_ADDRESS",
                    destination_port="INT64",
                ),
                **_KUBERNETES_OUTPUTS,
            ),
        )
    }
)


def output_prefix(template: str) -> str:
    """The attribute-name prefix under which an instance's ``attributeBindings`` read its
    handler's output: ``$out.<field>`` is compiled as ``<prefix><field>``, as Mixer did."""
    return f"adapter_template_{template}.output."
