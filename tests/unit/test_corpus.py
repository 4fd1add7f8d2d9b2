"""Real Istio configs from ../shared/corpus/istio/: every plain YAML file has a pinned outcome.

Each bookinfo sample is loaded alone (they are alternatives and reuse names). Mixer's own
``mixer/testdata/config`` directory is one config whose files refer to each other, so it is loaded
as a whole and each file's share of the problems is pinned. Helm templates (``*.tpl``) are not
YAML and are skipped. A file either loads or fails only because it needs an adapter we do not
have; the two files that are not Mixer config at all say so. The adapters are the real ones, so
their params parsers check the samples' params too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters import load_registry
from mixer.config import ConfigReport, check_config
from tests.shared_data import require_shared, shared_path
from tests.unit.config_helpers import relative

CORPUS = shared_path("corpus/istio")


@pytest.fixture(scope="module", autouse=True)
def _corpus_present() -> None:
    """Every test here reads the corpus: skip (fail in CI) naming its source when it is missing."""
    require_shared("corpus/istio")


TESTDATA = "mixer-testdata-config"
ADAPTERS = load_registry()

NOT_SUPPORTED = {
    "bookinfo-policy/prometheus-oop-rule.yaml": [
        "prometheus-oop-rule.yaml:40: handler/prometheus-handler: spec.connection: adapter "
        "'prometheus-nosession' is not supported: out-of-process adapters are not supported"
    ],
    "bookinfo-telemetry/fluentd-istio-crd.yaml": [
        "fluentd-istio-crd.yaml:21: fluentd/handler: kind: adapter 'fluentd' is not supported"
    ],
    "bookinfo-telemetry/fluentd-istio.yaml": [
        "fluentd-istio.yaml:28: handler/handler: spec.compiledAdapter: adapter 'fluentd' is not "
        "supported"
    ],
}
NOT_CONFIG = {
    "api/global_dictionary.yaml": [
        "global_dictionary.yaml:41: not a config resource: expected a mapping with apiVersion, "
        "kind, metadata and spec, got a list"
    ],
    "helm-mixer/values-1.4.10.yaml": [
        "values-1.4.10.yaml:4: not a config resource: no 'kind' (nor a top-level 'domain', for "
        "a rate-limit config)"
    ],
}
LOADS = [
    "bookinfo-policy/mixer-rule-deny-ip-crd.yaml",
    "bookinfo-policy/mixer-rule-deny-ip.yaml",
    "bookinfo-policy/mixer-rule-deny-label-crd.yaml",
    "bookinfo-policy/mixer-rule-deny-label.yaml",
    "bookinfo-policy/mixer-rule-deny-serviceaccount.yaml",
    "bookinfo-policy/mixer-rule-deny-whitelist-crd.yaml",
    "bookinfo-policy/mixer-rule-deny-whitelist.yaml",
    "bookinfo-policy/mixer-rule-ingress-denial.yaml",
    "bookinfo-policy/mixer-rule-kubernetesenv-telemetry.yaml",
    "bookinfo-policy/mixer-rule-productpage-ratelimit-crd.yaml",
    "bookinfo-policy/mixer-rule-productpage-ratelimit.yaml",
    "bookinfo-policy/mixer-rule-productpage-redis-quota-fixed-window.yaml",
    "bookinfo-policy/mixer-rule-productpage-redis-quota-rolling-window.yaml",
    "bookinfo-policy/mixer-rule-ratings-denial.yaml",
    "bookinfo-policy/mixer-rule-ratings-ratelimit.yaml",
    "bookinfo-policy/mixer-rule-ratings-redis-quota-fixed-window.yaml",
    "bookinfo-policy/mixer-rule-ratings-redis-quota-rolling-window.yaml",
    "bookinfo-policy/prometheus-adapter-deployment.yaml",
    "bookinfo-telemetry/log-entry-crd.yaml",
    "bookinfo-telemetry/log-entry.yaml",
    "bookinfo-telemetry/metrics-crd.yaml",
    "bookinfo-telemetry/metrics.yaml",
    "bookinfo-telemetry/tcp-metrics-crd.yaml",
    "bookinfo-telemetry/tcp-metrics.yaml",
    *(
        f"{TESTDATA}/{name}"
        for name in (
            "accesslog.yaml",
            "attributes.yaml",
            "deny.yaml",
            "kubernetesenv.yaml",
            "listcheck.yaml",
            "metrics.yaml",
            "prometheus.yaml",
            "quota.yaml",
            "source_ip_deny.yaml",
            "source_user_filter.yaml",
            "tcp_accesslog.yaml",
            "tcpmetrics.yaml",
        )
    ),
]
OUTCOMES: dict[str, list[str]] = {
    **{name: [] for name in LOADS},
    **NOT_SUPPORTED,
    **NOT_CONFIG,
}


def plain_yaml_files() -> list[str]:
    return sorted(
        str(path.relative_to(CORPUS))
        for path in CORPUS.rglob("*")
        if path.suffix in (".yaml", ".yml") and path.is_file()
    )


def load_alone(name: str, tmp_path: Path) -> ConfigReport:
    shutil.copy(CORPUS / name, tmp_path)
    return check_config(tmp_path, ADAPTERS)


@pytest.fixture(scope="module")
def testdata_report() -> ConfigReport:
    return check_config(CORPUS / TESTDATA, ADAPTERS)


def test_every_plain_yaml_file_of_the_corpus_has_a_pinned_outcome() -> None:
    assert plain_yaml_files() == sorted(OUTCOMES)


@pytest.mark.parametrize("name", sorted(n for n in OUTCOMES if not n.startswith(TESTDATA)))
def test_bookinfo_and_other_files_loaded_alone(name: str, tmp_path: Path) -> None:
    report = load_alone(name, tmp_path)
    assert [relative(problem, tmp_path) for problem in report.problems] == OUTCOMES[name]
    assert (report.snapshot is not None) == (not OUTCOMES[name])


@pytest.mark.parametrize("name", sorted(n for n in OUTCOMES if n.startswith(TESTDATA)))
def test_mixer_testdata_files_loaded_as_one_directory(
    name: str, testdata_report: ConfigReport
) -> None:
    directory = CORPUS / TESTDATA
    file = str(directory / Path(name).name)
    mine = [relative(p, directory) for p in testdata_report.problems if p.path == file]
    assert mine == OUTCOMES[name]


def test_mixer_testdata_loads_whole_kubernetesenv_included(tmp_path: Path) -> None:
    for path in (CORPUS / TESTDATA).glob("*.yaml"):
        shutil.copy(path, tmp_path)
    report = check_config(tmp_path, ADAPTERS)
    assert report.problems == ()
    assert report.snapshot is not None
    assert [rule.short_name for rule in report.snapshot.rules] == [
        "stdiohttp",
        "mixerdenysome",
        "kubeattrgenrule",
        "checkwl",
        "promhttp",
        "promtcp",
        "promtcpconnectionopen",
        "promtcpconnectionclosed",
        "quota",
        "mixerdenyip",
        "mixerdenyuser",
        "stdiotcp",
    ]
    # tcp_accesslog.yaml names the handler of accesslog.yaml as `stdio.handler` (name.kind).
    assert report.snapshot.rules[-1].actions[0].handler == "stdio.handler.istio-system"
    assert len(report.snapshot.vocabulary) == 88  # its own two manifests, not the 90 defaults
    # The generator's bindings are compiled, `$out.<field>` typed by the template's outputs.
    bindings = report.snapshot.instances["attributes.kubernetes.istio-system"].binding_programs
    assert bindings["source.labels"].result_type == "STRING_MAP"
    assert bindings["destination.ip"].result_type == "IP_ADDRESS"


@pytest.mark.parametrize(
    ("name", "handler", "instances"),
    [
        (
            "bookinfo-policy/mixer-rule-deny-label.yaml",
            "denyreviewsv3handler.handler.default",
            ("denyreviewsv3request.instance.default",),
        ),
        (
            "bookinfo-policy/mixer-rule-deny-label-crd.yaml",
            "denyreviewsv3handler.denier.default",
            ("denyreviewsv3request.checknothing.default",),
        ),
        (
            "bookinfo-policy/mixer-rule-deny-whitelist-crd.yaml",
            "whitelist.listchecker.default",
            ("appversion.listentry.default",),
        ),
        (
            "bookinfo-policy/mixer-rule-productpage-ratelimit-crd.yaml",
            "handler.memquota.istio-system",
            ("requestcount.quota.istio-system",),
        ),
        (
            "bookinfo-telemetry/metrics-crd.yaml",
            "doublehandler.prometheus.istio-system",
            ("doublerequestcount.instance.istio-system",),
        ),
        (
            "bookinfo-telemetry/log-entry-crd.yaml",
            "newloghandler.stdio.istio-system",
            ("newlog.logentry.istio-system",),
        ),
    ],
)
def test_bookinfo_samples_resolve_their_references(
    name: str, handler: str, instances: tuple[str, ...], tmp_path: Path
) -> None:
    shutil.copy(CORPUS / name, tmp_path)
    # Samples without a namespace are applied to the app's namespace, `default`.
    report = check_config(tmp_path, ADAPTERS, default_namespace="default")
    assert report.snapshot is not None
    (rule,) = report.snapshot.rules
    (action,) = rule.actions
    assert (action.handler, action.instances) == (handler, instances)


def test_the_adapter_deployment_sample_is_noted_not_loaded(tmp_path: Path) -> None:
    report = load_alone("bookinfo-policy/prometheus-adapter-deployment.yaml", tmp_path)
    assert report.snapshot is not None
    assert (report.snapshot.handlers, report.snapshot.rules) == ({}, ())
    assert [note.replace(f"{tmp_path}/", "") for note in report.notes] == [
        "prometheus-adapter-deployment.yaml:1: Service/prometheusadapter: ignored: apiVersion v1 "
        "is not Mixer config",
        "prometheus-adapter-deployment.yaml:17: Deployment/prometheusadapter: ignored: apiVersion "
        "apps/v1 is not Mixer config",
    ]
