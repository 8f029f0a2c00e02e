"""The dashboard in real headless Chromium (Debian's /usr/bin/chromium, or Playwright's own;
see tests/browser.py) driven by Playwright:
log in, watch counts change live as a worker runs jobs, open a failed job and retry it,
pause and resume a queue, run a schedule now, create, edit (previewing its next fire times),
pause, resume and delete one, and refuse a wrong password. Each page is
saved as a screenshot under artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from engine import Job, QueueManager
from engine.scheduler import define_schedule, upsert_schedule
from tests.browser import find_chromium, missing_line
from tests.helpers import wait_for
from tests.monitoring import PASSWORD, serve_dashboard

SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = await asyncio.to_thread(find_chromium)
    if chromium is None:
        pytest.fail(missing_line(os.environ))
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium, args=ARGS)
        yield b
        await b.close()


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_wrong_password_is_refused(browser: Browser, manager: QueueManager) -> None:
    manager.create_queue("serpram-sync")
    async with serve_dashboard(manager) as base:
        context = await browser.new_context(
            http_credentials={"username": "admin", "password": "admin"}
        )
        page = await context.new_page()
        response = await page.goto(f"{base}/admin/queues")
        assert response is not None and response.status == 401
        assert "Queues" not in await page.content()
        await shot(page, "0-wrong-password")
        await context.close()


async def test_operator_session(browser: Browser, manager: QueueManager) -> None:
    serpram = manager.create_queue("serpram-sync", {"attempts": 1})
    manager.create_queue("ayt-sync")
    await upsert_schedule(
        manager.store,
        define_schedule("serpram", "serpram-sync", cron="0 3 * * *", tz="Europe/Madrid"),
    )
    gate = asyncio.Event()
    failed_once: set[str] = set()

    async def handler(job: Job) -> Any:
        await job.log(f"processing {job.data}")
        await job.update_progress(50)
        if (job.data or {}).get("fail") and job.id not in failed_once:
            failed_once.add(job.id)
            raise RuntimeError("SERPRAM upstream answered 502")
        await gate.wait()
        return {"ok": True}

    async with serve_dashboard(manager) as base:
        context = await browser.new_context(
            http_credentials={"username": "admin", "password": PASSWORD},
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        await page.goto(f"{base}/admin/queues")
        await expect(page.locator("#live")).to_have_text("live")
        waiting = page.locator('[data-count="serpram-sync:waiting"]')
        active = page.locator('[data-count="serpram-sync:active"]')
        completed = page.locator('[data-count="serpram-sync:completed"]')
        await expect(waiting).to_have_text("0")

        # Live counts: jobs added, then picked up by a worker, then finished.
        for i in range(3):
            await serpram.add({"n": i})
        await expect(waiting).to_have_text("3")
        await manager.process("serpram-sync", handler, concurrency=3)
        await expect(active).to_have_text("3")
        await expect(waiting).to_have_text("0")
        await shot(page, "1-queues-live")
        gate.set()
        await expect(completed).to_have_text("3")

        # A failed job: open it from the failed list, read why, retry it.
        failing = await serpram.add({"fail": True})
        failed = page.locator('[data-count="serpram-sync:failed"]')
        await expect(failed).to_have_text("1")
        await failed.click()
        await expect(page.locator(f'#jobs [data-job="{failing.id}"]')).to_be_visible()
        await shot(page, "2-failed-jobs")
        await page.click(f'#jobs [data-job="{failing.id}"] a')
        await expect(page.locator("#failed-reason")).to_have_text("SERPRAM upstream answered 502")
        await expect(page.locator("#stacktrace")).to_contain_text("RuntimeError")
        await expect(page.locator("#timeline")).to_contain_text("failed")
        await shot(page, "3-job-failed")
        await page.click('[data-action="retry"]')

        async def retried_and_completed() -> bool:
            job = await serpram.get_job(failing.id)
            return job is not None and job.state == "completed"

        await wait_for(retried_and_completed)
        await page.reload()
        await expect(page.locator("#job-state")).to_have_text("completed")

        # Pause and resume from the queues page; the badge follows live.
        await page.goto(f"{base}/admin/queues#/")
        await page.click('[data-action="pause-serpram-sync"]')
        await expect(page.locator('[data-queue="serpram-sync"] [data-paused]')).to_be_visible()
        assert await serpram.is_paused()
        await page.click('[data-action="resume-serpram-sync"]')
        await expect(page.locator('[data-queue="serpram-sync"] [data-paused]')).to_have_count(0)
        assert not await serpram.is_paused()

        # Run a schedule now.
        await page.click('[data-nav="schedules"]')
        row = page.locator('[data-schedule="serpram"]')
        await expect(row).to_contain_text("0 3 * * *")
        await expect(row).to_contain_text("Europe/Madrid")
        await shot(page, "4-schedules")
        before = (await serpram.get_stats()).completed
        await page.click('[data-action="run-serpram"]')

        async def ran() -> bool:
            return (await serpram.get_stats()).completed == before + 1

        await wait_for(ran)

        # The audit trail names who did what.
        await page.click('[data-nav="audit"]')
        audit = page.locator("#audit")
        for action in ("manual", "resumed", "paused", "retried"):
            await expect(audit).to_contain_text(action)
        await expect(audit.locator("tbody tr").first).to_contain_text("admin")
        await shot(page, "5-audit")

        # Pagination of a long list.
        await serpram.pause("admin")
        await serpram.add_bulk([{"data": {"n": i}} for i in range(45)])
        await page.goto(f"{base}/admin/queues#/queue/serpram-sync/waiting")
        await expect(page.locator("#jobs tbody tr")).to_have_count(20)
        await page.click('[data-page="next"]')
        await expect(page.locator(".pager")).to_contain_text("page 2 of 3")
        await shot(page, "6-queue-jobs")
        await context.close()


async def test_an_operator_cancels_a_running_job_from_its_page(
    browser: Browser, manager: QueueManager
) -> None:
    queue = manager.create_queue("serpram-sync", {"attempts": 3})
    stopped = asyncio.Event()

    async def handler(job: Job) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "never"

    async with serve_dashboard(manager) as base:
        context = await browser.new_context(
            http_credentials={"username": "admin", "password": PASSWORD},
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await manager.process("serpram-sync", handler)
        job = await queue.add({"n": 1})

        async def running() -> bool:
            got = await queue.get_job(job.id)
            return got is not None and got.state == "active"

        await wait_for(running)
        await page.goto(f"{base}/admin/queues#/job/serpram-sync/{job.id}")
        await expect(page.locator("#job-state")).to_have_text("active")
        await page.click('[data-action="cancel"]')  # its CSRF header is the session's
        await asyncio.wait_for(stopped.wait(), TIMEOUT_MS / 1000)
        await page.reload()
        await expect(page.locator("#job-state")).to_have_text("failed")
        await expect(page.locator("#failed-reason")).to_have_text("cancelled by admin")
        await expect(page.locator('[data-action="cancel"]')).to_have_count(0)
        await shot(page, "7-job-cancelled")
        await page.click('[data-nav="audit"]')
        await expect(page.locator("#audit")).to_contain_text("cancelled")
        await context.close()


async def test_an_operator_creates_edits_pauses_and_deletes_a_schedule(
    browser: Browser, manager: QueueManager
) -> None:
    queue = manager.create_queue("reports")
    manager.create_queue("serpram-sync")
    await upsert_schedule(
        manager.store, define_schedule("serpram", "serpram-sync", cron="*/5 * * * *")
    )
    keys = manager.store.keys("reports")

    async def stored() -> dict[str, Any] | None:
        raw = await manager.client.hget(keys.schedule("nightly"), "def")
        return None if raw is None else orjson.loads(raw)

    async with serve_dashboard(manager) as base:
        context = await browser.new_context(
            http_credentials={"username": "admin", "password": PASSWORD},
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.goto(f"{base}/admin/queues#/schedules")

        # A declared schedule: run, pause and resume it here; edit and delete say why not.
        declared = page.locator('[data-schedule="serpram"]')
        await expect(declared).to_contain_text("declared")
        for verb in ("edit", "delete"):
            button = page.locator(f'[data-action="{verb}-serpram"]')
            await expect(button).to_be_disabled()
            await expect(button).to_have_attribute("title", re.compile("engine.toml"))

        # Create: an invalid expression is named before anything can be saved.
        await page.click('[data-action="new-schedule"]')
        await page.fill('input[name="name"]', "nightly")
        await page.select_option('select[name="queue"]', "reports")
        await page.fill('input[name="cron"]', "61 2 * * *")
        await expect(page.locator('.field[data-field="cron"] .error')).to_contain_text("61")
        await expect(page.locator("#save")).to_be_disabled()
        await shot(page, "8-schedule-invalid")
        await page.fill('input[name="cron"]', "30 2 * * *")
        await page.fill('input[name="timezone"]', "Europe/Madrid")
        await page.fill('textarea[name="data"]', '{"report": "nightly"}')
        await page.fill('textarea[name="job"]', '{"attempts": 3}')
        fires = page.locator("#preview li")
        await expect(fires).to_have_count(5)
        await expect(fires.first).to_contain_text("02:30")  # Madrid wall time
        await shot(page, "9-schedule-new")
        await expect(page.locator("#save")).to_be_enabled()
        await page.click("#save")
        row = page.locator('[data-schedule="nightly"]')
        await expect(row).to_contain_text("30 2 * * *")
        await expect(row).to_contain_text("api")
        definition = await stored()
        assert definition is not None and definition["data"] == {"report": "nightly"}
        assert definition["schedule"]["tz"] == "Europe/Madrid"
        assert definition["options"] == {"attempts": 3}

        # Edit: the preview follows the new expression before Save is possible again.
        await page.click('[data-action="edit-nightly"]')
        await expect(page.locator('input[name="name"]')).to_have_value("nightly")
        await expect(page.locator('input[name="cron"]')).to_have_value("30 2 * * *")
        await page.fill('input[name="cron"]', "15 7 * * 1-5")
        await page.fill('input[name="limit"]', "10")
        await expect(fires.first).to_contain_text("07:15")
        await expect(page.locator("#preview-status")).to_contain_text("next 5")
        await shot(page, "10-schedule-edit")
        await page.click("#save")
        await expect(row).to_contain_text("15 7 * * 1-5")
        definition = await stored()
        assert definition is not None and definition["schedule"]["cron"] == "15 7 * * 1-5"
        assert definition["limit"] == 10 and definition["data"] == {"report": "nightly"}

        # Pause and resume the schedule alone: its queue is not paused.
        await page.click('[data-action="pause-nightly"]')
        await expect(row.locator("[data-paused]")).to_be_visible()
        assert await manager.client.hget(keys.schedule("nightly"), "paused") == "1"
        assert not await queue.is_paused()
        await shot(page, "11-schedules-paused")
        await page.click('[data-action="resume-nightly"]')
        await expect(row.locator("[data-paused]")).to_have_count(0)
        assert await manager.client.hget(keys.schedule("nightly"), "paused") is None

        # Delete.
        await page.click('[data-action="delete-nightly"]')
        await expect(row).to_have_count(0)
        assert await stored() is None
        await expect(declared).to_be_visible()

        # Every change went through the CSRF-checked actions and names who asked.
        await page.click('[data-nav="audit"]')
        audit = page.locator("#audit")
        for what in ("schedule created", "schedule updated", "schedule paused",
                     "schedule resumed", "schedule removed"):  # fmt: skip
            await expect(audit).to_contain_text(what)
        await shot(page, "12-audit-schedules")
        await context.close()
