"""``python -m engine`` operator commands against a real Redis."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from engine.cli import main
from tests.redis_servers import RedisServer


@pytest.fixture
def cli_env(
    redis_server: RedisServer, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    for name in ("ENGINE_CONFIG", "ENGINE_JWT_SECRET", "ENGINE_JWT_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no engine.toml here: the built-in SERPRAM and AYT
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("ENGINE_PREFIX", prefix)
    return prefix


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def test_operator_commands_round_trip(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, body = run(capsys, "stats")
    assert code == 0 and set(body["queues"]) == {"serpram-sync", "ayt-sync"}  # type: ignore[arg-type]
    code, body = run(capsys, "schedules")
    assert code == 0
    assert [s["registered"] for s in body["schedules"]] == [False, False]  # type: ignore[attr-defined,index]

    code, body = run(capsys, "pause", "serpram-sync")
    assert code == 0 and body["changed"] is True
    assert body["message"] == "Queue serpram-sync paused"  # the API's JSON, message included
    code, body = run(capsys, "stats", "serpram-sync")
    assert code == 0 and body["stats"]["name"] == "serpram-sync"  # type: ignore[index]
    code, body = run(capsys, "resume", "serpram-sync")
    assert code == 0 and body["paused"] is False
    code, body = run(capsys, "jobs", "ayt-sync", "--state", "failed")
    assert code == 0 and body["jobs"] == []
    assert (body["start"], body["end"], body["count"]) == (0, 9, 0)
    code, body = run(capsys, "jobs", "ayt-sync", "--start", "5", "--end", "5000")
    assert code == 0 and body["end"] == 1004  # one page, as the API serves it
    code, body = run(capsys, "clean", "ayt-sync", "completed", "--grace-ms", "0")
    assert code == 0 and body["removed"] == 0 and body["gracePeriod"] == 0
    assert body["message"] == "0 completed jobs removed from ayt-sync"


def test_operator_errors_are_one_line(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
    assert main(["jobs", "ayt-sync", "--state", "bogus"]) == 1
    assert "state" in capsys.readouterr().err
    assert main(["run-now", "nope"]) == 1
    assert "serpram" in capsys.readouterr().err


def test_token_is_minted_from_the_configured_secret(
    cli_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["token", "--role", "admin"]) == 2
    assert "ENGINE_JWT_SECRET" in capsys.readouterr().err
    secret = secrets.token_hex(32)
    monkeypatch.setenv("ENGINE_JWT_SECRET", secret)
    # the role is explicit: no admin token by default
    with pytest.raises(SystemExit) as exited:
        main(["token"])
    assert exited.value.code == 2 and "--role" in capsys.readouterr().err
    # no token outliving the service's maximum lifetime
    assert main(["token", "--role", "viewer", "--ttl", str(30 * 24 * 3600)]) == 2
    assert "ENGINE_JWT_MAX_LIFETIME_S" in capsys.readouterr().err
    assert main(["token", "--role", "admin", "--sub", "ana", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["sub"] == "ana" and claims["role"] == "admin"
    assert claims["exp"] - claims["iat"] == 60


def test_python_dash_m_engine_prints_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for command in ("run", "stats", "jobs", "pause", "resume", "clean", "run-now", "schedules"):
        assert command in done.stdout
