"""One worker of the model-based test, in a process of its own (so that "kill" is a real
crash: SIGKILL, no cleanup; SIGTERM closes it gracefully).

Usage: python -m tests.model.worker_main '<json config>' (see driver.py, ``_spawn``).

It reaches Redis through its own fault proxy (``url``); every handler entry and exit is
recorded on a separate ledger server that no fault touches, so the model knows exactly
which attempts ran: ``{"ev": "start" | "end", "w": name, "job": id, "pon": processed on,
"atm": attempts made, "p": add call, "i": entry, "ok": ..., "t": wall time}``.

A job's ``data`` says what its handler does: sleep ``ms`` milliseconds, then fail while
``attempts_made < fail``. Prints ``{"ready": <worker id>}`` once started and
``{"closed": true}`` after a graceful close.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from engine import Job, QueueManager
from engine.connection import RedisSettings


async def main(cfg: dict[str, Any]) -> None:
    settings = RedisSettings(
        url=cfg["url"],
        socket_timeout_s=cfg["socket_timeout_s"],
        connect_timeout_s=cfg["connect_timeout_s"],
        retries=1,
    )
    manager = QueueManager(prefix=cfg["prefix"], settings=settings, max_events=cfg["max_events"])
    ledger = aioredis.Redis(port=cfg["ledger_port"], socket_timeout=10)
    name, key = cfg["name"], cfg["ledger_key"]

    async def note(ev: str, job: Job, **extra: Any) -> None:
        data = job.data if isinstance(job.data, dict) else {}
        entry = {
            "ev": ev,
            "w": name,
            "job": job.id,
            "pon": job.processed_on,
            "atm": job.attempts_made,
            "p": data.get("p"),
            "i": data.get("i"),
            "t": time.time(),
            **extra,
        }
        await ledger.rpush(key, orjson.dumps(entry))

    async def handler(job: Job) -> dict[str, str]:
        data = job.data if isinstance(job.data, dict) else {}
        await note("start", job)
        await asyncio.sleep(float(data.get("ms", 0)) / 1000)
        ok = job.attempts_made >= int(data.get("fail", 0))
        await note("end", job, ok=ok)
        if not ok:
            raise RuntimeError("planned failure")
        return {"w": name}

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    worker = await manager.process(cfg["queue"], handler, **cfg["worker"])
    print(json.dumps({"ready": worker.id, "pid": os.getpid()}), flush=True)
    await stop.wait()
    logging.getLogger("model").warning("SIGTERM: closing")
    await manager.close_all()
    await ledger.aclose()
    print(json.dumps({"closed": True}), flush=True)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(created).3f %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(main(json.loads(sys.argv[1])))
