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
