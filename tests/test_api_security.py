"""Security over real HTTP: forged tokens, roles, hostile input, limits, Redis down.

Mirrors RELIABILITY.md rows S1-S7 and C3: every refusal is JSON, 4xx or 503, never a
traceback, and nothing secret leaves the process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_api_helpers import SECRET, Api, register_seed_queues, serve

from engine import QueueManager
from engine.api import ApiSettings, AuthConfig
from engine.api.auth import AuthFailed
from engine.api.guard import ADMIN
from engine.api.routes import ROUTES
from tests.redis_servers import RedisServer

NOW = int(time.time())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_raw(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


def _claims(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"sub": "mallory", "role": "admin", "exp": int(time.time()) + 600}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
async def api(manager: QueueManager) -> AsyncIterator[Api]:
    register_seed_queues(manager)
    async with serve(manager) as a:
        yield a


FORGED: dict[str, Callable[[], str | None]] = {
    "no header": lambda: None,
    "empty bearer": lambda: "Bearer ",
    "basic scheme": lambda: "Basic YWRtaW46YWRtaW4=",
    "malformed": lambda: "Bearer not-a-jwt",
    "two segments": lambda: "Bearer eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYWRtaW4ifQ",
    "bad signature": lambda: "Bearer " + jwt.encode(_claims(), "x" * 40, "HS256"),
    "alg none": lambda: "Bearer " + jwt.encode(_claims(), None, algorithm="none"),
    "alg none with signature": lambda: (
        "Bearer " + _hs256_raw({"alg": "none", "typ": "JWT"}, _claims(), SECRET.encode())
    ),
    "wrong algorithm hs512": lambda: "Bearer " + jwt.encode(_claims(), SECRET, "HS512"),
    "expired": lambda: "Bearer " + jwt.encode(_claims(exp=NOW - 3600), SECRET, "HS256"),
    "missing exp": lambda: "Bearer " + jwt.encode(_claims(exp=None), SECRET, "HS256"),
    "nbf in future": lambda: "Bearer " + jwt.encode(_claims(nbf=NOW + 3600), SECRET, "HS256"),
    "iat in future": lambda: "Bearer " + jwt.encode(_claims(iat=NOW + 3600), SECRET, "HS256"),
    "aud not configured": lambda: "Bearer " + jwt.encode(_claims(aud="other"), SECRET, "HS256"),
    "unknown crit": lambda: (
        "Bearer " + jwt.encode(_claims(), SECRET, "HS256", headers={"crit": ["x"], "x": 1})
    ),
    "exp not a number": lambda: "Bearer " + jwt.encode(_claims(exp="soon"), SECRET, "HS256"),
    # PyJWT reads a numeric string as a number: the RFC's NumericDate is a JSON number
    "exp a numeric string": lambda: (
        "Bearer " + jwt.encode(_claims(exp=str(NOW + 600)), SECRET, "HS256")
    ),
    "exp true": lambda: (
        "Bearer " + _hs256_raw({"alg": "HS256"}, _claims(exp=True), SECRET.encode())
    ),
    "iat a string": lambda: "Bearer " + jwt.encode(_claims(iat=str(NOW)), SECRET, "HS256"),
    # lifetimes past ENGINE_JWT_MAX_LIFETIME_S (24 h by default)
    "exp in year 9999": lambda: "Bearer " + jwt.encode(_claims(exp=253402300799), SECRET, "HS256"),
    "exp 1e300": lambda: (
        "Bearer " + _hs256_raw({"alg": "HS256"}, _claims(exp=1e300), SECRET.encode())
    ),
    "issued 2 days before exp": lambda: (
        "Bearer " + jwt.encode(_claims(iat=NOW - 100, exp=NOW + 2 * 86400), SECRET, "HS256")
    ),
    "25 h left, no iat": lambda: (
        "Bearer " + jwt.encode(_claims(exp=NOW + 25 * 3600), SECRET, "HS256")
    ),
}


@pytest.mark.parametrize("case", list(FORGED))
async def test_forged_or_invalid_tokens_are_401_with_challenge(api: Api, case: str) -> None:
    header = FORGED[case]()
    headers = {} if header is None else {"Authorization": header}
    for method, path in (("GET", "/api/queues/stats"), ("POST", "/api/queues/serpram-sync/pause")):
        status, body, resp = await api.call(method, path, headers=headers)
        assert status == 401, (case, path)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["success"] is False and body["error"] in (
            "missing bearer token",
            "invalid token",
            "token expired",
            "token lifetime exceeds the maximum",
        )
    assert not (await api.manager.get_queue("serpram-sync").is_paused())


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": NOW, "exp": NOW + 86400},  # exactly the maximum
        {"exp": NOW + 23 * 3600},  # no iat: what is left counts
        {"iat": NOW - 60, "exp": NOW + 600.5},  # NumericDate may be fractional
    ],
)
async def test_tokens_within_the_maximum_lifetime_are_accepted(
    api: Api, claims: dict[str, Any]
) -> None:
    token = jwt.encode(_claims(**claims), SECRET, "HS256")
    status, _, _ = await api.call(
        "GET", "/api/queues/stats", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200


def test_the_maximum_lifetime_is_a_setting() -> None:
    auth = AuthConfig.from_env({"ENGINE_JWT_SECRET": SECRET, "ENGINE_JWT_MAX_LIFETIME_S": "600"})
    assert auth.max_lifetime_s == 600
    auth.verify(jwt.encode(_claims(iat=NOW, exp=NOW + 600), SECRET, "HS256"))
    with pytest.raises(AuthFailed, match="lifetime"):
        auth.verify(jwt.encode(_claims(iat=NOW, exp=NOW + 3600), SECRET, "HS256"))
    with pytest.raises(ValueError, match="ENGINE_JWT_MAX_LIFETIME_S"):
        AuthConfig.from_env({"ENGINE_JWT_SECRET": SECRET, "ENGINE_JWT_MAX_LIFETIME_S": "0"})
    assert AuthConfig.hs256(SECRET).max_lifetime_s == 24 * 3600


async def test_a_valid_token_within_leeway_is_accepted(api: Api) -> None:
    token = jwt.encode(_claims(exp=int(time.time()) - 5), SECRET, "HS256")
    status, _, _ = await api.call(
        "GET", "/api/queues/stats", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200


def _rsa_pem() -> tuple[Any, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pem.decode()


async def test_rs256_service_refuses_hs_token_signed_with_its_public_key(
    manager: QueueManager,
) -> None:
    register_seed_queues(manager)
    private, public_pem = _rsa_pem()
    auth = AuthConfig.public_key(public_pem, audience="engine-api", issuer="https://idp.test")
    good = jwt.encode(_claims(aud="engine-api", iss="https://idp.test"), private, algorithm="RS256")
    confused = _hs256_raw(
        {"alg": "HS256", "typ": "JWT"},
        _claims(aud="engine-api", iss="https://idp.test"),
        public_pem.encode(),
    )
    other_key, _ = _rsa_pem()
    cases = {
        "hs with public key": confused,
        "signed by another key": jwt.encode(
            _claims(aud="engine-api", iss="https://idp.test"), other_key, algorithm="RS256"
        ),
        "wrong aud": jwt.encode(
            _claims(aud="other", iss="https://idp.test"), private, algorithm="RS256"
        ),
        "missing aud": jwt.encode(_claims(iss="https://idp.test"), private, algorithm="RS256"),
        "wrong iss": jwt.encode(
            _claims(aud="engine-api", iss="https://evil.test"), private, algorithm="RS256"
        ),
        "partial iss": jwt.encode(
            _claims(aud="engine-api", iss="https://idp.tes"), private, algorithm="RS256"
        ),
        "rs512 not allowed": jwt.encode(
            _claims(aud="engine-api", iss="https://idp.test"), private, algorithm="RS512"
        ),
    }
    async with serve(manager, auth=auth) as api:
        status, _, _ = await api.call(
            "GET", "/api/queues/stats", headers={"Authorization": f"Bearer {good}"}
        )
        assert status == 200
        for case, token in cases.items():
            status, _, resp = await api.call(
                "GET", "/api/queues/stats", headers={"Authorization": f"Bearer {token}"}
            )
            assert status == 401, case
            assert "Bearer" in resp.headers["WWW-Authenticate"]


async def test_es256_public_key_pins_es256(manager: QueueManager) -> None:
    register_seed_queues(manager)
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    auth = AuthConfig.public_key(pem.decode())
    assert auth.algorithms == ("ES256",)
    async with serve(manager, auth=auth) as api:
        good = jwt.encode(_claims(), private, algorithm="ES256")
        status, _, _ = await api.call(
            "GET", "/api/queues/stats", headers={"Authorization": f"Bearer {good}"}
        )
        assert status == 200
        hs = jwt.encode(_claims(), SECRET, "HS256")
        status, _, _ = await api.call(
            "GET", "/api/queues/stats", headers={"Authorization": f"Bearer {hs}"}
        )
        assert status == 401


def test_auth_config_refuses_unsafe_setups(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        AuthConfig.from_env({"ENGINE_JWT_SECRET": "short"})
    _, pem = _rsa_pem()
    with pytest.raises(ValueError, match="not both"):
        AuthConfig.from_env({"ENGINE_JWT_SECRET": SECRET, "ENGINE_JWT_PUBLIC_KEY": pem})
    with pytest.raises(ValueError, match="PEM"):
        AuthConfig.from_env({"ENGINE_JWT_SECRET": pem})
    with pytest.raises(ValueError, match="ENGINE_JWT_SECRET"):
        AuthConfig.from_env({})
    key_file = tmp_path / "pub.pem"
    key_file.write_text(pem)
    assert AuthConfig.from_env({"ENGINE_JWT_PUBLIC_KEY": str(key_file)}).algorithms == ("RS256",)


def _mutations() -> list[tuple[str, str]]:
    params = {"{name}": "serpram-sync", "{job_id}": "1"}
    out = []
    for route in ROUTES:
        if route.access != ADMIN:
            continue
        path = route.path
        for k, v in params.items():
            path = path.replace(k, v)
        if route.name == "run_now":
            path = "/api/queues/serpram/run"
        out.append((route.method, path))
    return out


MUTATIONS = _mutations()


@pytest.mark.parametrize(("method", "path"), MUTATIONS)
async def test_non_admin_is_403_on_every_mutation(
    api: Api, client: aioredis.Redis, method: str, path: str
) -> None:
    await api.manager.add_job("serpram-sync", {})
    before = await _keys(client)
    cases: list[tuple[str | None, dict[str, Any]]] = [
        ("viewer", {}),
        (None, {}),
        (None, {"roles": ["viewer", "ops"]}),
        ("Admin", {}),
    ]
    for role, extra in cases:
        token = api.token(role, sub="eve", **extra)
        # a role sent outside the signed claims changes nothing
        headers = {"Authorization": f"Bearer {token}", "X-Role": "admin"}
        status, body, _ = await api.call(method, path + "?role=admin", headers=headers)
        assert status == 403, (role, extra, method, path)
        assert body == {
            "success": False,
            "error": "admin role required",
            "timestamp": body["timestamp"],
        }
    assert await _keys(client) - before == set()  # no key created
    assert not await api.manager.get_queue("serpram-sync").is_paused()


async def test_admin_from_roles_list_may_mutate(api: Api) -> None:
    token = api.token(None, sub="ops", roles=["viewer", "admin"])
    status, _, _ = await api.call(
        "POST", "/api/queues/ayt-sync/pause", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200


async def _keys(client: aioredis.Redis) -> set[str]:
    """Every key: a refused call creates none. (Not a count: other tests' request
    records expire meanwhile on the shared server.)"""
    return {key async for key in client.scan_iter(count=1000)}


HOSTILE = ["nope", "..%2F..%2Fetc", "a%7Bb%7D", "%2A", "a:b", "a%00b", "x" * 200, "-lead", ".."]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_queue_names_are_refused_without_creating_keys(
    api: Api, client: aioredis.Redis, name: str
) -> None:
    before = await _keys(client)
    for method, tail in (
        ("GET", "stats"),
        ("GET", "jobs?state=failed"),
        ("GET", "events"),
        ("POST", "pause"),
        ("POST", "clean/completed"),
        ("POST", "run"),
        ("GET", "jobs/1"),
    ):
        status, body, _ = await api.call(method, f"/api/queues/{name}/{tail}")
        assert status in (400, 404), (name, tail, status)
        assert isinstance(body, dict) and body["success"] is False
    assert await _keys(client) - before == set()  # no key created


async def test_a_10kb_queue_name_is_refused(api: Api, client: aioredis.Redis) -> None:
    before = await _keys(client)
    status, _, _ = await api.call("GET", "/api/queues/" + "q" * 10_000 + "/stats")
    assert 400 <= status < 500
    assert await _keys(client) - before == set()  # no key created


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("end=1000000000000", "end"),
        ("end=-1", "end"),
        ("start=-5", "start"),
        ("end=abc", "end"),
        ("start=1e3", "start"),
        ("end=%EF%BC%91", "end"),  # fullwidth digit one: not ASCII
        ("state=bogus", "state"),
        ("state=", "state"),
        ("limit=5", "limit"),
        ("=null", ""),
    ],
)
async def test_job_range_abuse_is_400_naming_the_field(api: Api, query: str, field: str) -> None:
    status, body, _ = await api.call("GET", f"/api/queues/serpram-sync/jobs?{query}")
    assert status == 400
    assert body["field"] == field


async def test_largest_page_is_allowed(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/queues/serpram-sync/jobs?start=0&end=999")
    assert status == 200 and body["jobs"] == []


async def test_a_range_past_one_page_stops_at_a_page_and_says_so(api: Api) -> None:
    for i in range(3):
        await api.manager.add_job("serpram-sync", {"i": i})
    # no refusal spanning two parameters (the OpenAPI document could not state it)
    path = "/api/queues/serpram-sync/jobs?start=1&end=999999999"
    status, body, _ = await api.call("GET", path)
    assert status == 200
    assert (body["start"], body["end"], body["count"]) == (1, 1000, 2)
    status, body, _ = await api.call("GET", "/api/queues/serpram-sync/jobs?start=5&end=2")
    assert status == 200 and body["jobs"] == [] and body["count"] == 0


async def test_oversize_and_malformed_bodies(api: Api) -> None:
    path = "/api/queues/serpram-sync/clean/completed"
    big = b'{"gracePeriod": 1, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    status, body, _ = await api.call(
        "POST",
        path,
        data=io.BytesIO(big),
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert status == 413 and body["success"] is False

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"x" * 65536

    status, body, _ = await api.call(
        "POST", path, data=chunks(), headers={**api.headers(), "Content-Type": "application/json"}
    )
    assert status == 413 and body["success"] is False
    # a 2 MiB body on an endpoint that takes none is refused just the same
    status, _, _ = await api.call("POST", "/api/queues/serpram-sync/pause", data=io.BytesIO(big))
    assert status == 413

    cases: list[tuple[bytes, str, str]] = [
        (b"{not json", "application/json", "body"),
        (b"[1, 2]", "application/json", "body"),
        (b"[" * 10_000 + b"]" * 10_000, "application/json", "body"),
        (b'{"gracePeriod": 5}', "text/plain", "body"),
        (b'{"gracePeriod": "abc"}', "application/json", "gracePeriod"),
        (b'{"gracePeriod": -1}', "application/json", "gracePeriod"),
        (b'{"gracePeriod": 1e30}', "application/json", "gracePeriod"),
        (b'{"gracePeriod": true}', "application/json", "gracePeriod"),
        (b'{"gracePeriod": null}', "application/json", "gracePeriod"),
        (b'{"gracePeriod": 1, "state": "active"}', "application/json", "state"),
        (b"\xff\xfe", "application/json", "body"),
    ]
    for raw, ctype, field in cases:
        status, body, _ = await api.call(
            "POST", path, data=raw, headers={**api.headers(), "Content-Type": ctype}
        )
        assert status == 400, raw[:30]
        assert body["field"] == field, raw[:30]
    status, _, _ = await api.call("GET", "/api/queues/health")
    assert status == 200


def _leaks(text: str, secrets_: list[str]) -> list[str]:
    return [s for s in secrets_ if s and s in text]


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
async def test_redis_down_gives_503_json_without_secrets(
    redis_factory: Callable[..., RedisServer],
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    password = "redis-pw-" + prefix
    server = redis_factory(extra_args=("--requirepass", password))
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    manager = QueueManager(url, prefix=prefix)
    register_seed_queues(manager)
    settings = ApiSettings(request_timeout_s=0.5)
    caplog.set_level(logging.DEBUG)
    try:
        async with serve(manager, settings=settings) as api:
            status, _, _ = await api.call("GET", "/api/queues/stats")
            assert status == 200
            token = api.token()
            if fault == "stopped":
                server.kill()
            else:
                server.freeze()
            texts: list[str] = []
            calls = [
                ("GET", "/api/queues/stats"),
                ("GET", "/api/queues/serpram-sync/stats"),
                ("GET", "/api/queues/serpram-sync/jobs?state=failed"),
                ("GET", "/api/queues/serpram-sync/jobs/1"),
                ("GET", "/api/queues/serpram-sync/events"),
                ("POST", "/api/queues/serpram-sync/pause"),
                ("POST", "/api/queues/serpram-sync/resume"),
                ("POST", "/api/queues/serpram-sync/clean/completed"),
                ("POST", "/api/queues/serpram-sync/clean/failed"),
                ("POST", "/api/queues/serpram/run"),
                ("POST", "/api/queues/ayt/run"),
                ("POST", "/api/queues/serpram-sync/jobs/1/retry"),
                ("DELETE", "/api/queues/serpram-sync/jobs/1"),
            ]
            # frozen: each call waits out the request deadline, so a sample is enough
            for method, path in calls if fault == "stopped" else calls[::4]:
                status, body, resp = await api.call(method, path)
                assert status == 503, (method, path, body)
                assert body["success"] is False and body["error"] == "Redis unavailable"
                texts.append(json.dumps(body) + str(dict(resp.headers)))
            status, body, resp = await api.call("GET", "/api/queues/health", headers={})
            assert status == 503
            assert body["status"] == "unhealthy" and body["details"] == {}
            texts.append(json.dumps(body))
            # the API still answers what needs no Redis
            status, _, _ = await api.call("GET", "/api/openapi.json", headers={})
            assert status == 200
    finally:
        server.thaw()
        await manager.close_all()
    everything = "\n".join(texts) + "\n" + caplog.text
    secrets_ = [password, url, str(server.port), SECRET, token]
    assert _leaks(everything, secrets_) == []
    assert "Traceback" not in everything
