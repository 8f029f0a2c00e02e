"""The OpenAPI document is true to the routes table, and schemathesis finds no 5xx.

The fuzz runs schemathesis' own checks (server errors, status codes, content types,
response schemas, negative data rejection, ignored auth...) on cases generated from the
served document, sent over real HTTP to an app on loopback backed by the test Redis.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from test_api_helpers import AUTH, manual_run_targets, register_seed_queues

from engine import QueueManager
from engine.api import create_app
from engine.api.openapi import OPERATIONS, build_openapi
from engine.api.routes import ROUTES
from engine.api.server import EdgeRunner
from tests.redis_servers import RedisServer

FUZZ_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "12"))  # per route and mode
CLI_EXAMPLES = int(os.environ.get("API_CLI_EXAMPLES", "6"))
# The one check turned off for one operation, and why (tests/schemathesis.toml).
ST_CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"


def test_spec_and_routes_table_agree() -> None:
    doc = build_openapi()
    in_spec = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    in_table = {(r.method, r.path) for r in ROUTES}
    assert in_spec == in_table
    assert set(OPERATIONS) == {r.name for r in ROUTES}
    assert doc["openapi"].startswith("3.")


class ServerThread:
    """The API in its own thread and event loop, for synchronous HTTP clients."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url, self.prefix = redis_url, prefix
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from aiohttp import web

        self.manager = QueueManager(self.redis_url, prefix=self.prefix)
        register_seed_queues(self.manager)
        for i in range(3):
            await self.manager.add_job("serpram-sync", {"i": i})
        app = create_app(self.manager, AUTH, run_targets=manual_run_targets(self.manager))
        self.runner = EdgeRunner(app)  # the service's server
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.manager.close_all()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(10), "API thread did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def live_api(redis_server: RedisServer, prefix: str) -> Iterator[ServerThread]:
    with ServerThread(redis_server.url, prefix) as server:
        yield server


def test_served_document_is_the_built_one(live_api: ServerThread) -> None:
    resp = requests.get(live_api.base + "/api/openapi.json", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == build_openapi()


def test_schemathesis_cli_with_all_checks_and_phases_finds_no_failures(
    live_api: ServerThread, tmp_path: Path
) -> None:
    """``st run`` with every check, as an operator would run it: examples, coverage, fuzzing and
    stateful phases, every check (ST202 included: the server refuses nothing the document
    allows, but for the one operation tests/schemathesis.toml names, with why). Bounded
    examples keep it short; ``make fuzz``-sized runs are in the report."""
    token = AUTH.mint("fuzzer", "admin")
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        # Every check: chosen in ST_CONFIG, as `--checks all` would override its exception.
        [str(st), "--config-file", str(ST_CONFIG), "run", live_api.base + "/api/openapi.json",
         "--max-examples", str(CLI_EXAMPLES), "--generation-deterministic",
         "-H", f"Authorization: Bearer {token}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:]
    summary = result.stdout.split("SUMMARY")[-1]
    assert "Failures:" not in summary, summary
    assert re.search(r"(\d+) generated, \1 passed", summary), summary


def test_the_schemathesis_config_turns_off_one_check_for_one_operation_only() -> None:
    config = tomllib.loads(ST_CONFIG.read_text())
    assert config == {
        "checks": {"enabled": True},
        "operations": [
            {
                "include-operation-id": "put_schedule",
                "checks": {"positive_data_acceptance": {"enabled": False}},
            }
        ],
    }
    loaded = schemathesis.config.SchemathesisConfig.from_path(str(ST_CONFIG))
    [op] = loaded.projects.default.operations.operations
    checks = op.checks
    assert not checks.positive_data_acceptance.enabled
    assert checks.negative_data_rejection.enabled and checks.not_a_server_error.enabled
    assert "put_schedule" in OPERATIONS


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_fuzz_as_a_viewer_finds_no_failures(
    live_api: ServerThread, mode: GenerationMode
) -> None:
    role = "viewer"
    doc: dict[str, Any] = requests.get(live_api.base + "/api/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    token = AUTH.mint("fuzzer", role)
    headers = {"Authorization": f"Bearer {token}"}
    session = requests.Session()

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(
        max_examples=FUZZ_EXAMPLES * len(ROUTES),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=live_api.base, session=session, headers=headers)

    try:
        fuzz()
    finally:
        session.close()
