"""The ordinary test fixtures on containers (PORTAL_AUTH_INFRA=containers): PostgreSQL and Kafka
started by testcontainers from the images docker-compose.yml builds, the four services as
processes on this machine, and the thin path of the e2e suite run against them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from portal_auth.devstack.containers import ROOT

pytestmark = pytest.mark.compose


def test_the_e2e_thin_path_passes_on_the_project_images(images: object) -> None:
    env = {**os.environ, "PORTAL_AUTH_INFRA": "containers", "PORTAL_AUTH_KAFKA": "apache"}
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_HOST"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/e2e/test_thin_path.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout
