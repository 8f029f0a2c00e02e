"""`make test` sets the dashboard's browser up or stops with one line naming the command
(README "Requirements"). Runs the real `make test` on one browser test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import PLAYWRIGHT_INSTALL, SYSTEM_CHROMIUM, find_chromium, install_commands

ROOT = Path(__file__).resolve().parent.parent
ONE_BROWSER_TEST = "tests/test_dashboard_browser.py -k wrong_password_is_refused"


def make_test(**env: str) -> subprocess.CompletedProcess[str]:
    # This interpreter's virtualenv, taken as installed: the nested make must not reinstall.
    venv = sys.prefix
    return subprocess.run(
        ["make", "-s", "-o", f"{venv}/.installed", "test", f"VENV={venv}",
         f"PYTEST_ARGS={ONE_BROWSER_TEST}"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip


def test_make_test_without_a_browser_stops_with_one_line_naming_the_command() -> None:
    result = make_test(
        ENGINE_TEST_CHROMIUM="/nonexistent/chromium", ENGINE_TEST_BROWSER_INSTALL="0"
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert len(lines) == 1, result.stderr
    assert "/nonexistent/chromium" in lines[0]
    assert "playwright install chromium" in lines[0] and "apt-get install chromium" in lines[0]
    assert "passed" not in result.stdout and "error" not in result.stdout  # pytest never ran


def test_make_test_uses_the_chromium_it_finds() -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.fail("no Chromium: `make browser-check` installs one or names the command")
    result = make_test(ENGINE_TEST_CHROMIUM=chromium, ENGINE_TEST_BROWSER_INSTALL="0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_install_order_distribution_package_first_then_playwright() -> None:
    as_root = install_commands({}, is_root=True, apt_get="/usr/bin/apt-get")
    assert len(as_root) == 2 and "install -y -qq chromium" in as_root[0][-1]
    assert as_root[1] == PLAYWRIGHT_INSTALL
    # not root, no apt, or a custom path apt cannot produce: Playwright's browser only
    assert install_commands({}, is_root=False, apt_get="/usr/bin/apt-get") == [PLAYWRIGHT_INSTALL]
    assert install_commands({}, is_root=True, apt_get=None) == [PLAYWRIGHT_INSTALL]
    custom = {"ENGINE_TEST_CHROMIUM": "/opt/chromium"}
    assert install_commands(custom, is_root=True, apt_get="/usr/bin/apt-get") == [
        PLAYWRIGHT_INSTALL
    ]
    assert install_commands({"ENGINE_TEST_BROWSER_INSTALL": "0"}, True, "apt-get") == []
    assert SYSTEM_CHROMIUM == "/usr/bin/chromium"
