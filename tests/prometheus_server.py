"""A real Prometheus server (the Debian ``prometheus`` package) on a free port, owned by one test.

It scrapes live eqr processes and answers PromQL through its HTTP API, so a dashboard query or an
alert rule is judged by the program that runs it in production, not by a regular expression.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.live_server import free_port, stop_process, wait_http_ok
from tests.requires import os_command

START_TIMEOUT_S = 30.0


class PrometheusServer:
    """``config``: the contents of prometheus.yml (scrape jobs, rule files with absolute paths)."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.folder = folder
        self.port = free_port()
        self.config_path = folder / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = folder / "prometheus.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        binary = os_command("prometheus", "prometheus")
        args = [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.folder / 'data'}"]
        args += [f"--web.listen-address=127.0.0.1:{self.port}"]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        wait_http_ok(self.process, f"{self.url}/-/ready", self.log_path, "prometheus", START_TIMEOUT_S)
        return self

    def api(self, path: str, **params: Any) -> Any:
        """``GET /api/v1/{path}``'s ``data``; a PromQL error fails the test with Prometheus's message."""
        body = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def stop(self) -> None:
        stop_process(self.process)
