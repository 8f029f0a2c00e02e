"""Redis 7.0's error replies, word for word (server.c / cluster.c shared objects), for the
proxy to answer in Redis's place. tests/faults/test_real_errors.py checks every one that a
real server can be made to produce against the text that server sends."""

from __future__ import annotations

REDIS_ERRORS: dict[str, str] = {
    "OOM": "OOM command not allowed when used memory > 'maxmemory'.",
    "NOREPLICAS": "NOREPLICAS Not enough good replicas to write.",
    "BUSY": (
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    ),
    "TRYAGAIN": "TRYAGAIN Multiple keys request during rehashing of slot",
    "LOADING": "LOADING Redis is loading the dataset in memory",
    "MASTERDOWN": (
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
    ),
    "READONLY": "READONLY You can't write against a read only replica.",
    "CLUSTERDOWN": "CLUSTERDOWN The cluster is down",
}


def error_text(name_or_text: str) -> str:
    """The reply text for a known error code (``OOM``), or the text itself."""
    return REDIS_ERRORS.get(name_or_text.upper(), name_or_text)


def error_reply(name_or_text: str) -> bytes:
    """The RESP bytes of that error reply."""
    text = error_text(name_or_text).replace("\r", " ").replace("\n", " ")
    return b"-" + text.encode() + b"\r\n"
