"""Static checks of the deployment files: schemas, real validators, and the names that tie the
compose stack together.

* ``compose.yaml`` against the Compose Specification's JSON schema (as vendored by
  ``check-jsonschema``); every bind-mounted path exists; the services the configs name exist.
* Every Kubernetes manifest under ``deploy/k8s/`` against the Kubernetes JSON schemas (from
  ``kubernetes-validate``, strict: unknown fields are errors), plus what the Deployment must do.
* ``deploy/envoy.yaml`` parsed by Envoy's own protos (the isolated xds-protos venv), plus the
  listener, cluster and filter names the stack needs.
* ``deploy/prometheus.yml`` by ``promtool check config``; mixer's deploy configs by mixer's own
  validator; the dashboards' JSON, data sources and the Istio copies.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mixer.attributes.envoy import reporter_kind
from mixer.runtime.build import validate_directory
from tests.compat.harness import ensure_compat_venv
from tests.mixer_process import ROOT
from tests.shared_data import require_shared

pytestmark = pytest.mark.deploy

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
ENVOY = yaml.safe_load((DEPLOY / "envoy.yaml").read_text())
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
RATELIMIT = yaml.safe_load((DEPLOY / "mixer" / "ratelimit.yaml").read_text())
# Grafana's fixed grid.
GRID_COLUMNS = 24


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(K8S.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# ------------------------------------------------------------------------------ compose


def test_compose_file_matches_the_compose_specification() -> None:
    schema_file = (
        importlib.resources.files("check_jsonschema")
        / "builtin_schemas"
        / "vendor"
        / "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The validator does catch mistakes (a misspelt key under a service):
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["mixer"]["volume"] = []
    assert not validator.is_valid(broken)


def test_compose_bind_mounts_and_build_context_exist() -> None:
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith("./"), f"{name}: {volume} is not a bind mount"
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file()


def test_compose_stack_is_wired_together() -> None:
    services = COMPOSE["services"]
    env = services["mixer"]["environment"]
    admin = _host_port(env["MIXER_ADMIN_ADDRESS"])[1]
    adapter = _host_port(env["MIXER_METRICS_ADDRESS"])[1]
    grpc_port = _host_port(env["MIXER_ADDRESS"])[1]
    assert env["MIXER_ADMIN_ADDRESS"].startswith("0.0.0.0:"), (
        "admin must be reachable in a container"
    )
    # Prometheus scrapes mixer's two ports under the job names the dashboards use.
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in PROMETHEUS["scrape_configs"]
    }
    assert targets["mixer"] == [f"mixer:{admin}"]
    assert targets["mixer-adapter"] == [f"mixer:{adapter}"]
    for job, addresses in targets.items():
        for address in addresses:
            host = _host_port(address)[0]
            assert host == "localhost" or host in services, f"job {job}: no service {host}"
    # mixer's Redis, its OTel export and Envoy's cluster all name compose services.
    assert env["MIXER_REDIS_URL"].startswith("redis://redis:")
    quota = _documents(DEPLOY / "mixer" / "quota-redis.yaml")[0]
    assert quota["spec"]["params"]["redisServerUrl"] == "redis:6379"
    otel = _documents(DEPLOY / "mixer" / "otel.yaml")[0]
    otel_host, otel_port = _host_port(otel["spec"]["params"]["endpoint"])
    collector = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    assert otel_host in services
    assert collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(f":{otel_port}")
    mixer_cluster = _cluster("mixer")
    address = mixer_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert address["address"]["socket_address"] == {"address": "mixer", "port_value": grpc_port}
    app = _cluster("inbound|8080||sample-app.demo.svc.cluster.local")
    app_address = app["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert app_address["socket_address"]["address"] in services
    assert "8080" in " ".join(services["app"]["command"])
    # Grafana gets the provisioned data source and dashboards; anonymous users only view.
    grafana = services["grafana"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DASHBOARDS / Path(home).name).is_file()
    # Published ports stay on the loopback interface.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    # The load generator only runs when asked for, and goes through Envoy's egress listener.
    loadgen = services["loadgen"]
    assert loadgen["profiles"] == ["loadgen"]
    assert "http://envoy:10001" in loadgen["command"]


def test_compose_mixer_config_is_valid_for_mixer(tmp_path: Path) -> None:
    """The files compose mounts into mixer's config dir load without a single problem."""
    mounts = COMPOSE["services"]["mixer"]["volumes"]
    target_dir = COMPOSE["services"]["mixer"]["environment"]["MIXER_CONFIG_DIR"]
    for mount in mounts:
        source, target, _ = mount.split(":")
        assert Path(target).parent == Path(target_dir)
        shutil.copy(ROOT / source, tmp_path / Path(target).name)
    assert [str(p) for p in validate_directory(tmp_path)] == []


# ------------------------------------------------------------------------------ Dockerfile


def test_dockerfile_is_slim_non_root_and_health_checked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:3.11-slim", "python:3.11-slim"]
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", text, re.M)
    assert set(re.findall(r"^EXPOSE (.+)$", text, re.M)[0].split()) == {"9091", "15014", "42422"}
    assert 'ENTRYPOINT ["mixer"]' in text
    # Everything the build copies from the context is let through .dockerignore.
    ignore = (ROOT / ".dockerignore").read_text().split()
    copied = [
        source.rstrip("/")
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
        for source in [w for w in line.split() if not w.startswith("--")][:-1]
    ]
    assert {"pyproject.toml", "README.md", "mixer", "adapters", "rules"} <= set(copied)
    for source in copied:
        assert f"!{source}/" in ignore or f"!{source}" in ignore, source


def test_dockerfile_installs_exactly_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    installs = [" ".join(line.split()) for line in re.findall(r"pip install (.+)", text)]
    # Dependencies only from the hashed lock, then mixer alone: nothing is resolved anew.
    assert any("--require-hashes -r requirements/run.txt" in line for line in installs)
    rest = [line for line in installs if "--require-hashes" not in line]
    assert rest and all("--no-deps" in line and "--no-build-isolation" in line for line in rest)
    assert "COPY requirements/run.txt" in text


# ------------------------------------------------------------------------------ Kubernetes


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    manifests = _manifests()
    kinds = {doc["kind"] for _, doc in manifests}
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler"} <= kinds
    version = kubernetes_validate.latest_version()
    for path, doc in manifests:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}: {exc}")
    # Strict mode refuses unknown fields (a misspelt probe):
    path, deployment = next((p, d) for p, d in manifests if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_kustomizations_list_existing_resources() -> None:
    variants = []
    for kustomization in sorted(K8S.rglob("kustomization.yaml")):
        for resource in yaml.safe_load(kustomization.read_text())["resources"]:
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"
        variants.append(kustomization.parent.name)
    assert sorted(variants) == ["base", "configmap", "git-sync"]


@pytest.mark.parametrize("variant", ["configmap", "git-sync"])
def test_mixer_deployment_runs_replicas_safely(variant: str) -> None:
    deployment = _documents(K8S / variant / "deployment.yaml")[0]
    services = {d["metadata"]["name"]: d for d in _documents(K8S / "base" / "service.yaml")}
    hpa = _documents(K8S / "base" / "hpa.yaml")[0]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    mixer = next(c for c in pod["containers"] if c["name"] == "mixer")
    assert spec["replicas"] >= 3 and hpa["spec"]["minReplicas"] >= 3
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert mixer["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert mixer["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for container in pod["containers"] + pod.get("initContainers", []):
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    env = {e["name"]: e["value"] for e in mixer["env"]}
    assert env["MIXER_REDIS_URL"] == "redis://redis:6379/0"
    assert env["MIXER_ADMIN_ADDRESS"].startswith("0.0.0.0:")
    ports = {p["name"]: p["containerPort"] for p in mixer["ports"]}
    assert ports == {
        "grpc": _host_port(env["MIXER_ADDRESS"])[1],
        "http-admin": _host_port(env["MIXER_ADMIN_ADDRESS"])[1],
        "http-metrics": _host_port(env["MIXER_METRICS_ADDRESS"])[1],
    }
    service_ports = {p["name"]: p["targetPort"] for p in services["mixer"]["spec"]["ports"]}
    assert set(service_ports.values()) == set(ports)
    selector = services["mixer"]["spec"]["selector"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    # mixer reads its rules where the variant puts them.
    config_dir = mixer["args"][mixer["args"].index("--config-dir") + 1]
    mounts = {m["mountPath"]: m["name"] for m in mixer["volumeMounts"]}
    assert any(config_dir.startswith(path) for path in mounts), (config_dir, mounts)


def test_rules_configmap_holds_the_rules_verbatim(tmp_path: Path) -> None:
    configmap = _documents(K8S / "configmap" / "rules-configmap.yaml")[0]
    expected = {
        "attributes.yaml": ROOT / "rules" / "attributes.yaml",
        "policy.yaml": ROOT / "rules" / "policy.yaml",
        "telemetry.yaml": ROOT / "rules" / "telemetry.yaml",
        "quota-redis.yaml": DEPLOY / "mixer" / "quota-redis.yaml",
        "ratelimit.yaml": DEPLOY / "mixer" / "ratelimit.yaml",
    }
    assert set(configmap["data"]) == set(expected)
    for key, path in expected.items():
        assert configmap["data"][key] == path.read_text(), f"{key} differs from {path}: regenerate"
        (tmp_path / key).write_text(configmap["data"][key])
    assert [str(p) for p in validate_directory(tmp_path)] == []


# ------------------------------------------------------------------------------ Envoy


def _listener(name: str) -> dict[str, Any]:
    listener: dict[str, Any] = next(
        item for item in ENVOY["static_resources"]["listeners"] if item["name"] == name
    )
    return listener


def _cluster(name: str) -> dict[str, Any]:
    cluster: dict[str, Any] = next(
        item for item in ENVOY["static_resources"]["clusters"] if item["name"] == name
    )
    return cluster


def _connection_manager(listener: str) -> dict[str, Any]:
    hcm: dict[str, Any] = _listener(listener)["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def test_envoy_config_parses_with_envoys_own_protos() -> None:
    python = ensure_compat_venv()
    script = Path(__file__).with_name("envoy_config_check.py")

    def check(config: dict[str, Any]) -> dict[str, Any]:
        done = subprocess.run(
            [str(python), str(script)],
            input=json.dumps(config),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={"PYTHONNOUSERSITE": "1", "PATH": "/usr/bin:/bin"},
        )
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    assert check(ENVOY) == {"ok": True}
    broken = json.loads(json.dumps(ENVOY))
    broken["static_resources"]["clusters"][0]["conect_timeout"] = "1s"
    answer = check(broken)
    assert not answer["ok"] and "conect_timeout" in answer["error"]


def test_envoy_sends_checks_rate_limits_and_access_logs_to_mixer() -> None:
    ingress = _connection_manager("ingress_http")
    filters = [f["name"] for f in ingress["http_filters"]]
    assert filters == [
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.router",
    ]
    ext_authz, ratelimit, _ = (f["typed_config"] for f in ingress["http_filters"])
    assert ext_authz["grpc_service"]["envoy_grpc"]["cluster_name"] == "mixer"
    assert ext_authz["transport_api_version"] == "V3"
    assert ext_authz["failure_mode_allow"] is False
    rls = ratelimit["rate_limit_service"]
    assert rls["grpc_service"]["envoy_grpc"]["cluster_name"] == "mixer"
    assert rls["transport_api_version"] == "V3"
    # The domain and descriptor keys are the ones mixer's rate-limit config defines.
    assert ratelimit["domain"] == RATELIMIT["domain"]
    keys = {d["key"] for d in RATELIMIT["descriptors"]}
    route = ingress["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    actions = [a for limit in route["rate_limits"] for a in limit["actions"]]
    assert {a["request_headers"]["descriptor_key"] for a in actions} <= keys
    # Both listeners log to mixer's ALS; the log names make the reporter kinds mixer expects.
    kinds = {}
    for name in ("ingress_http", "egress_http"):
        for log in _connection_manager(name)["access_log"]:
            common = log["typed_config"]["common_config"]
            assert common["grpc_service"]["envoy_grpc"]["cluster_name"] == "mixer"
            assert common["transport_api_version"] == "V3"
            kinds[name] = reporter_kind(common["log_name"])
    assert kinds == {"ingress_http": "inbound", "egress_http": "outbound"}
    # gRPC needs HTTP/2 to mixer.
    options = _cluster("mixer")["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"]
    # Istio-style cluster names, so access logs carry destination.service.host.
    for cluster in ENVOY["static_resources"]["clusters"]:
        if cluster["name"] != "mixer":
            assert re.fullmatch(r"(inbound|outbound)\|\d+\|[^|]*\|[^|]+", cluster["name"])
    # The egress listener forwards to the ingress listener.
    egress_route = _connection_manager("egress_http")["route_config"]["virtual_hosts"][0]
    target = _cluster(egress_route["routes"][0]["route"]["cluster"])
    socket = target["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    ingress_port = _listener("ingress_http")["address"]["socket_address"]["port_value"]
    assert socket["socket_address"]["port_value"] == ingress_port


# ------------------------------------------------------------------------------ Prometheus, Grafana


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package"
    done = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisioning_matches_the_dashboards() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    source = sources["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    scrape = PROMETHEUS["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())
    mount = next(
        v
        for v in COMPOSE["services"]["grafana"]["volumes"]
        if v.startswith("./deploy/grafana/dash")
    )
    assert providers["providers"][0]["options"]["path"] == mount.split(":")[1]
    uids = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        uids.append(board["uid"])
        for panel in board["panels"]:
            refs = [panel.get("datasource")] + [
                t.get("datasource") for t in panel.get("targets", [])
            ]
            for ref in refs:
                # Istio's dashboards name the data source; ours refer to its uid.
                assert ref in (None, source["name"]) or ref == {
                    "type": "prometheus",
                    "uid": source["uid"],
                }
    assert len(uids) == len(set(uids)) == 6


def test_istio_dashboards_are_the_corpus_copies() -> None:
    corpus_dashboards = require_shared("corpus/istio/grafana")
    names = sorted(p.name for p in corpus_dashboards.glob("*.json"))
    assert names == [
        "istio-mesh-dashboard.json",
        "istio-service-dashboard.json",
        "istio-workload-dashboard.json",
    ]
    for name in names:
        assert (DASHBOARDS / name).read_bytes() == (corpus_dashboards / name).read_bytes()


@pytest.mark.parametrize("name", ["mixer-traffic", "mixer-policy", "mixer-service"])
def test_mixer_dashboards_are_well_formed(name: str) -> None:
    board = json.loads((DASHBOARDS / f"{name}.json").read_text())
    assert board["uid"] == name and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_COLUMNS, panel["title"]
        covered = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & covered, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_kubernetesenv_rbac_grants_exactly_its_list_and_watch() -> None:
    docs = {d["kind"]: d for d in _documents(K8S / "base" / "kubernetesenv-rbac.yaml")}
    granted = {
        (group, resource, verb)
        for rule in docs["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # What adapters/kubernetesenv/watch.py lists and watches, and nothing more.
    assert granted == {
        (group, resource, verb)
        for group, resource in (
            ("", "pods"),
            ("", "replicationcontrollers"),
            ("apps", "replicasets"),
        )
        for verb in ("list", "watch")
    }
    binding = docs["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == docs["ClusterRole"]["metadata"]["name"]
    account = _documents(K8S / "base" / "serviceaccount.yaml")[0]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "default"}
    ]
