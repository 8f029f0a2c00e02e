"""Load the Lua scripts in ``engine/lua/`` and call them with checked key counts.

Each file is ``verb_object-N.lua`` where N is its number of KEYS. Scripts are registered
once per client (redis-py handles EVALSHA and the NOSCRIPT fallback, also inside a
pipeline), and every call checks that it passes exactly N keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

_FILENAME = re.compile(r"^(?P<name>[a-z_]+)-(?P<keys>\d+)\.lua$")

EncodableArg = str | int | float | bytes


def _sources() -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for entry in resources.files("engine").joinpath("lua").iterdir():
        match = _FILENAME.match(entry.name)
        if not match:
            raise RuntimeError(f"Lua file {entry.name!r} is not named verb_object-N.lua")
        found[match["name"]] = (int(match["keys"]), entry.read_text(encoding="utf-8"))
    return found


SOURCES = _sources()


@dataclass(slots=True)
class LuaScript:
    """One registered script; call it with ``keys``, ``args`` and optionally a pipeline."""

    name: str
    num_keys: int
    script: AsyncScript

    def __call__(
        self, keys: Sequence[str], args: Sequence[EncodableArg] = (), client: Any = None
    ) -> Any:
        if len(keys) != self.num_keys:
            raise ValueError(
                f"script {self.name} takes {self.num_keys} keys, {len(keys)} were given"
            )
        return self.script(keys=list(keys), args=list(args), client=client)


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

    def _load(self, name: str) -> LuaScript:
        num_keys, source = SOURCES[name]
        return LuaScript(name, num_keys, self._client.register_script(source))
