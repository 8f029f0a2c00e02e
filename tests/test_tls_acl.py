"""TLS (rediss://) and a least-privilege ACL user: the engine runs on both, and the
mistakes an operator makes fail clearly (RELIABILITY.md S10)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError

from engine import QueueManager
from engine.connection import RedisSettings, create_client
from tests.helpers import wait_for
from tests.redis_servers import create_acl_user, make_tls_files


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _tls_settings(server, tls, **kwargs):
    return RedisSettings(
        url=server.url,
        tls_ca_file=tls.ca_file,
        tls_cert_file=tls.client_cert_file,
        tls_key_file=tls.client_key_file,
        **kwargs,
    )


async def test_engine_runs_jobs_over_tls_with_a_least_privilege_user(
    redis_factory, tls_files, prefix
):
    server = redis_factory(tls=tls_files)
    create_acl_user(server, "engine", "s3cret", (f"{prefix}:*",))
    url = server.url.replace("rediss://", "rediss://engine:s3cret@")
    settings = _tls_settings(server, tls_files)
    settings = RedisSettings(**{**_fields(settings), "url": url})
    manager = QueueManager(prefix=prefix, settings=settings)
    done: list[int] = []

    async def handler(job):
        done.append(job.data)
        return job.data

    try:
        report = await manager.check()
        # CONFIG is @dangerous: the user cannot read it, and the report says so.
        assert report.maxmemory_policies is None
        assert "could not be checked" in report.warnings[0]
        admin = server.client()
        try:  # the two refused probes (INFO, CONFIG GET) are the only expected entries
            denied = {e["object"] for e in admin.execute_command("ACL", "LOG")}
            assert denied == {"info", "config|get"}
            admin.execute_command("ACL", "LOG", "RESET")
        finally:
            admin.close()
        queue = manager.create_queue("tls")
        await queue.add_bulk([{"data": i} for i in range(20)])
        await manager.process("tls", handler, concurrency=4)
        await wait_for(lambda: _done(done, 20), timeout_s=10)
        assert sorted(done) == list(range(20))
    finally:
        await manager.close_all()
    admin = server.client()
    try:
        # Nothing the engine did needed a command or key outside its grant.
        assert admin.execute_command("ACL", "LOG") == []
    finally:
        admin.close()


async def _done(done, n):
    await asyncio.sleep(0)
    return len(done) >= n


def _fields(settings):
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


async def test_acl_user_cannot_touch_keys_outside_its_prefix(redis_factory, prefix):
    server = redis_factory()
    create_acl_user(server, "engine", "pw", (f"{prefix}:*",))
    client = create_client(RedisSettings(url=f"redis://engine:pw@127.0.0.1:{server.port}/0"))
    try:
        await client.set(f"{prefix}:ok", 1)
        with pytest.raises(NoPermissionError):
            await client.set("other:key", 1)
        with pytest.raises(NoPermissionError):
            await client.flushall()
    finally:
        await client.aclose()


async def test_wrong_password_fails_clearly_and_is_not_logged(redis_factory, caplog):
    server = redis_factory()
    create_acl_user(server, "engine", "right", ("x:*",))
    settings = RedisSettings(url=f"redis://engine:wrong@127.0.0.1:{server.port}/0")
    assert "wrong" not in settings.redacted_url
    client = create_client(settings)
    try:
        with pytest.raises(AuthenticationError):
            await client.ping()
    finally:
        await client.aclose()


async def test_plain_client_on_the_tls_port_fails_fast(redis_factory, tls_files):
    server = redis_factory(tls=tls_files)
    plain = RedisSettings(url=f"redis://127.0.0.1:{server.port}/0", socket_timeout_s=1.0)
    client = create_client(plain)
    try:
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(client.ping(), 5)
    finally:
        await client.aclose()


async def test_tls_client_rejects_a_server_certificate_from_an_unknown_ca(
    redis_factory, tls_files, tmp_path
):
    server = redis_factory(tls=tls_files)
    other_ca = make_tls_files(tmp_path / "other")
    client = create_client(
        RedisSettings(url=server.url, tls_ca_file=other_ca.ca_file, socket_timeout_s=1.0)
    )
    try:
        with pytest.raises(ConnectionError, match=r"(?i)certificate"):
            await client.ping()
    finally:
        await client.aclose()


async def test_tls_server_requiring_client_certificates_accepts_the_engine(
    redis_factory, tls_files, prefix
):
    server = redis_factory(tls=tls_files, tls_auth_clients="yes")
    manager = QueueManager(prefix=prefix, settings=_tls_settings(server, tls_files))
    try:
        job = await manager.create_queue("mtls").add({"a": 1})
        assert (await manager.get_job("mtls", job.id)).data == {"a": 1}
    finally:
        await manager.close_all()
    no_cert = create_client(
        RedisSettings(url=server.url, tls_ca_file=tls_files.ca_file, socket_timeout_s=1.0)
    )
    try:
        with pytest.raises(ConnectionError):
            await no_cert.ping()
    finally:
        await no_cert.aclose()
