"""The Chromium the dashboard's browser tests drive, and ``make browser-check``.

Where it comes from, in order: the system Chromium (``ENGINE_TEST_CHROMIUM``, default
Debian's ``/usr/bin/chromium``), else Playwright's own downloaded Chromium. ``python -m
tests.browser`` (the ``browser-check`` prerequisite of ``make test``) installs one when
neither is there: the distribution's package when running as root with apt-get, else
``playwright install chromium``; and if that fails too it prints one line naming the
command to run and exits 1. ``ENGINE_TEST_BROWSER_INSTALL=0`` never installs anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

SYSTEM_CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT_INSTALL = [sys.executable, "-m", "playwright", "install", "chromium"]


def system_chromium(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("ENGINE_TEST_CHROMIUM") or SYSTEM_CHROMIUM


def playwright_chromium() -> str | None:
    """Playwright's own Chromium, if it has been downloaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        path = p.chromium.executable_path
    return path if os.access(path, os.X_OK) else None


def find_chromium(env: Mapping[str, str] | None = None) -> str | None:
    system = system_chromium(env)
    if os.access(system, os.X_OK) and Path(system).is_file():
        return system
    return playwright_chromium()


def install_commands(env: Mapping[str, str], is_root: bool, apt_get: str | None) -> list[list[str]]:
    """What to try, in order, when no Chromium is found."""
    if env.get("ENGINE_TEST_BROWSER_INSTALL") == "0":
        return []
    commands: list[list[str]] = []
    # The distribution's package lands on /usr/bin/chromium: only useful when that is the
    # path asked for.
    if is_root and apt_get is not None and system_chromium(env) == SYSTEM_CHROMIUM:
        commands.append(["sh", "-c", f"{apt_get} update -qq && {apt_get} install -y -qq chromium"])
    commands.append(PLAYWRIGHT_INSTALL)
    return commands


def missing_line(env: Mapping[str, str]) -> str:
    return (
        f"No Chromium for the dashboard tests (looked for {system_chromium(env)} and "
        f"Playwright's browser): run `sudo apt-get install chromium` or "
        f"`.venv/bin/python -m playwright install chromium`, then `make test` again."
    )


def ensure(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    if find_chromium(env) is not None:
        return 0
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    for command in install_commands(env, is_root, shutil.which("apt-get")):
        print(f"browser-check: no Chromium found, trying: {' '.join(command)}", file=sys.stderr)
        result = subprocess.run(
            command,
            env={**env, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode == 0 and find_chromium(env) is not None:
            return 0
    print(missing_line(env), file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(ensure())
