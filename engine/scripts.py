"""Load the Lua scripts in ``engine/lua/`` and call them with checked key counts.

Each file is ``verb_object-N.lua`` where N is its number of KEYS, or ``verb_object-N+.lua``
for a script that takes N fixed keys followed by a variable tail (the hash of every job it
touches, say); every call checks the count. Every key a script reads or writes is in its
KEYS, so Redis (and a Cluster in the middle of a slot migration) refuses the call before
its first write rather than half-way through (docs/ARCHITECTURE.md, "Scripts").

Calls go out as EVALSHA; a script missing from the server (restart, failover, SCRIPT
FLUSH) is re-sent with EVAL, which also caches it again. Inside a pipeline
(``await script(keys, args, client=pipe)``), run the pipeline with :func:`execute` rather
than ``pipe.execute()``: it retries only the calls that came back NOSCRIPT and so never
needs redis-py's extra SCRIPT EXISTS round trip per pipeline, and it works on Redis
Cluster, where redis-py refuses pipelined ``evalsha``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, NamedTuple

from redis.exceptions import NoScriptError

_FILENAME = re.compile(r"^(?P<name>[a-z_]+)-(?P<keys>\d+)(?P<tail>\+?)\.lua$")
# Where a pipeline remembers which of its commands were script calls (for NOSCRIPT retry).
_QUEUED = "_engine_script_calls"
_INCLUDE = re.compile(r"^-- @include ([a-z_]+)$", re.MULTILINE)

EncodableArg = str | int | float | bytes


def _expand(source: str, includes: Traversable) -> str:
    """Splice ``-- @include <name>`` lines with ``lua/include/<name>.lua``: Redis runs
    each script alone, so code shared by several scripts is pasted in when loaded."""

    def splice(match: re.Match[str]) -> str:
        return includes.joinpath(f"{match[1]}.lua").read_text(encoding="utf-8")

    return _INCLUDE.sub(splice, source)


class ScriptSource(NamedTuple):
    """One Lua file: its fixed key count, whether more keys may follow, its source."""

    num_keys: int
    variadic: bool
    source: str


def _sources() -> dict[str, ScriptSource]:
    found: dict[str, ScriptSource] = {}
    lua = resources.files("engine").joinpath("lua")
    includes = lua.joinpath("include")
    for entry in lua.iterdir():
        if not entry.is_file():
            continue
        match = _FILENAME.match(entry.name)
        if not match:
            raise RuntimeError(f"Lua file {entry.name!r} is not named verb_object-N[+].lua")
        source = _expand(entry.read_text(encoding="utf-8"), includes)
        found[match["name"]] = ScriptSource(int(match["keys"]), bool(match["tail"]), source)
    return found


SOURCES = _sources()


async def _queued() -> None:
    return None


@dataclass(slots=True)
class LuaScript:
    """One script bound to a client; call it with ``keys``, ``args`` and optionally a
    pipeline (then await :func:`execute` on that pipeline for the result)."""

    name: str
    num_keys: int
    source: str
    client: Any
    variadic: bool = False
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __call__(
        self, keys: Sequence[str], args: Sequence[EncodableArg] = (), client: Any = None
    ) -> Any:
        if len(keys) != self.num_keys and not (self.variadic and len(keys) > self.num_keys):
            wanted = f"more than {self.num_keys}" if self.variadic else str(self.num_keys)
            raise ValueError(f"script {self.name} takes {wanted} keys, {len(keys)} were given")
        if client is None:
            return self._run(keys, args)
        queued: dict[int, tuple[LuaScript, Sequence[str], Sequence[EncodableArg]]]
        queued = client.__dict__.setdefault(_QUEUED, {})
        queued[len(client)] = (self, keys, args)
        client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        return _queued()

    async def _run(self, keys: Sequence[str], args: Sequence[EncodableArg]) -> Any:
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(self.source, len(keys), *keys, *args)


async def execute(pipe: Any, *, raise_on_error: bool = True) -> list[Any]:
    """Run a pipeline holding script calls; re-send the ones that came back NOSCRIPT.

    Results keep their indices, but re-sent calls take effect after the rest of the
    pipeline: NOSCRIPT only follows a restart, failover or flush, and no engine pipeline
    relies on the order of effects between its commands. Raises the first error of any
    command, after every command has run; with ``raise_on_error=False`` a command's error
    is its result instead (the pipeline itself may still raise, e.g. when the connection
    drops).
    """
    results: list[Any] = list(await pipe.execute(raise_on_error=False))
    queued = pipe.__dict__.pop(_QUEUED, {})
    for index, result in enumerate(results):
        if isinstance(result, NoScriptError) and index in queued:
            script, keys, args = queued[index]
            try:
                results[index] = await script._run(keys, args)
            except Exception as exc:
                if raise_on_error:
                    raise
                results[index] = exc
    if raise_on_error:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results


class Scripts:
    """All engine scripts registered on one client: one attribute per Lua file."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.add_job = self._load("add_job")
        self.pause_queue = self._load("pause_queue")
        self.clean_jobs = self._load("clean_jobs")
        self.retry_job = self._load("retry_job")
        self.promote_job = self._load("promote_job")
        self.remove_job = self._load("remove_job")
        self.read_job = self._load("read_job")
        self.list_waiting = self._load("list_waiting")
        self.locate_job = self._load("locate_job")
        self.cancel_job = self._load("cancel_job")
        self.acquire_lease = self._load("acquire_lease")
        self.renew_lease = self._load("renew_lease")
        self.release_lease = self._load("release_lease")
        self.upsert_schedule = self._load("upsert_schedule")
        self.fire_schedule = self._load("fire_schedule")
        self.run_schedule = self._load("run_schedule")
        self.move_to_active = self._load("move_to_active")
        self.complete_job = self._load("complete_job")
        self.fail_job = self._load("fail_job")
        self.extend_leases = self._load("extend_leases")
        self.recover_stalled = self._load("recover_stalled")
        self.release_jobs = self._load("release_jobs")
        self.update_progress = self._load("update_progress")
        self.add_log = self._load("add_log")

    def _load(self, name: str) -> LuaScript:
        src = SOURCES[name]
        return LuaScript(name, src.num_keys, src.source, self._client, src.variadic)
