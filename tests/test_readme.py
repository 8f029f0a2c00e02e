"""README stays true: every Python block runs as written against a private Redis, every
TOML block is a valid engine config."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from engine.config import load_config
from tests.helpers import wait_for
from tests.redis_servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


PYTHON = blocks("python")


def block_id(body: str) -> str:
    first = next(line for line in body.splitlines() if line and not line.startswith("import"))
    return first[:40]


def test_readme_has_the_python_blocks_it_should() -> None:
    # the parser finds them all (a broken fence would silently skip a block)
    assert len(PYTHON) == README.count("```python")
    assert len(PYTHON) >= 4


def readme_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "REDIS_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "ENGINE_JWT_SECRET": secrets.token_hex(32),
            "ENGINE_PORT": str(free_port()),
        }
    )
    # The blocks run from a project directory holding the shipped engine.toml.
    (tmp_path / "engine.toml").write_text((ROOT / "engine.toml").read_text())
    return env


@pytest.mark.parametrize("body", PYTHON, ids=[block_id(b) for b in PYTHON])
async def test_python_block_runs_as_written(
    body: str, tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    server = redis_factory()
    env = readme_env(tmp_path, server.url)
    script = tmp_path / "block.py"
    script.write_text(body)
    log = tmp_path / "block.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    try:
        if "web.run_app(" in body:
            # A server block: it answers on ENGINE_PORT, then stops cleanly on Ctrl-C.
            url = f"http://127.0.0.1:{env['ENGINE_PORT']}/api/queues/health"
            async with aiohttp.ClientSession() as session:

                async def healthy() -> bool:
                    assert proc.returncode is None, log.read_text()
                    try:
                        async with session.get(url) as resp:
                            return resp.status == 200
                    except aiohttp.ClientError:
                        return False

                await wait_for(healthy, timeout_s=30)
            proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("body", blocks("toml"))
def test_toml_block_is_a_valid_config(
    body: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tomllib.loads(body)
    path = tmp_path / "engine.toml"
    path.write_text(body)
    # the alerts block names its webhook by environment variable, as README says
    monkeypatch.setenv("ENGINE_ALERT_WEBHOOK", "https://alerts.example/hook")
    load_config(str(path), {})


def sh_block(marker: str) -> str:
    [body] = [b for b in blocks("sh") if marker in b]
    return body


async def test_the_walkthrough_runs_against_make_run(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    # Terminal 1 as written, up to `make run`: it prints the two secrets it exported.
    terminal1 = sh_block("# terminal 1")
    assert terminal1.rstrip().endswith("make run")
    setup = terminal1.rstrip().removesuffix("make run")
    first = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", setup, stdout=asyncio.subprocess.PIPE
    )
    printed, _ = await asyncio.wait_for(first.communicate(), 30)
    assert first.returncode == 0
    secret, password = printed.decode().split()
    # `make run` itself: the service with the shipped engine.toml, on a free port, with a
    # private Redis (item 1's test covers the private redis-server make run starts).
    port = free_port()
    env = readme_env(tmp_path, redis_factory().url)
    env.update({"ENGINE_JWT_SECRET": secret, "ENGINE_ADMIN_PASSWORD": password})
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine", "run", "--port", str(port),
            cwd=tmp_path, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                assert service.returncode is None, log.read_text()
                try:
                    async with session.get(f"http://127.0.0.1:{port}/api/schedules") as resp:
                        return resp.status == 401  # routes mounted, auth in place
                except aiohttp.ClientError:
                    return False

            await wait_for(up, timeout_s=60)
        # Terminal 2 as written; the values it says to paste come from the environment,
        # the port is this test's, `.venv/bin/python` is this test's interpreter.
        # ... then "Schedules at run time", in the same terminal.
        walk = sh_block("export TOKEN=") + sh_block("# terminal 2, after the walk-through")
        lines = [line for line in walk.splitlines() if not re.fullmatch(r"export \w+=<.*>", line)]
        script = (
            "\n".join(lines)
            .replace("http://127.0.0.1:3001", f"http://127.0.0.1:{port}")
            .replace(".venv/bin/python", sys.executable)
        )
        shell_env = {**env, "ENGINE_JWT_SECRET": secret, "ENGINE_ADMIN_PASSWORD": password}
        done = await asyncio.create_subprocess_exec(
            "bash", "-e", "-c", script, cwd=ROOT, env=shell_env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out_b, err_b = await asyncio.wait_for(done.communicate(), 120)
        out, err = out_b.decode(), err_b.decode()
        assert done.returncode == 0, out + err
        assert err == "", err
        for expected in (
            '"status":"',  # health
            '"stats":{',
            '"jobId":"',
            '"schedules":[',
            '"paused":true',
            '"removed":',
            '"by":"',  # the audit trail names the token's subject
            "HTTP/1.1 401",
            '"openapi":"3.1',
            '"csrf":"',
            '"action":"created"',  # schedules at run time
            '"source":"api"',
            '"nextFires":[',
            '"changed":true',
            '"field":"cron"',
            "declared in the config (engine.toml)",  # the 409 of a declared schedule
            '"schedule":"weekday-report"',  # deleted
        ):
            assert expected in out, (expected, out)
        assert '"success":false,"error":"' in out  # the 403 and 404 refusals
        assert secret not in log.read_text() and password not in log.read_text()
    finally:
        if service.returncode is None:
            service.send_signal(signal.SIGTERM)
            await asyncio.wait_for(service.wait(), 60)
