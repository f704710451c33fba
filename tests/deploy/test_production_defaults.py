"""Production settings refuse unsafe deployments and default to HTTPS-only; the quick start
publishes on loopback; a served process never falls back to development settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STRONG_SECRET = "x" * 48
PRINT_SETTINGS = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
    "s.WEB_SESSION_COOKIE_SECURE, s.OPERATOR_PASSWORD_CHECKED)"
)


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def production(**env: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "dify_platform.settings.production",
        "SECRET_KEY": STRONG_SECRET,
        "ALLOWED_HOSTS": "chat.example.com",
        **env,
    }


def test_production_is_https_only_by_default() -> None:
    result = python(PRINT_SETTINGS, **production())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "31536000", "True", "True", "True"]


def test_production_refuses_any_host() -> None:
    result = python(PRINT_SETTINGS, **production(ALLOWED_HOSTS="*"))
    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr


@pytest.mark.parametrize("password", ["admin", "12345678", "short"])
def test_production_refuses_a_default_or_weak_operator_password(password: str) -> None:
    code = (
        "import django, sys; django.setup(); from django.core.management import call_command; "
        "from django.core.management.base import CommandError\n"
        "try:\n    call_command('seed_demo', admin_password=sys.argv[1])\n"
        "except CommandError as error:\n    print('refused:', error); sys.exit(3)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, password],
        cwd=ROOT,
        env={**os.environ, **production()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "ADMIN_PASSWORD" in result.stdout


def test_a_served_process_needs_its_settings_named() -> None:
    result = python("import dify_platform.asgi")
    assert result.returncode != 0
    assert "DJANGO_SETTINGS_MODULE is not set" in result.stderr


def test_the_quick_start_publishes_on_loopback_and_k8s_names_its_hosts() -> None:
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    assert compose["services"]["nginx"]["ports"] == ["127.0.0.1:8080:80"]
    configmap = yaml.safe_load((ROOT / "deploy/k8s/configmap.yaml").read_text())
    assert "*" not in configmap["data"]["ALLOWED_HOSTS"]
