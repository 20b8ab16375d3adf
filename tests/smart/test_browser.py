"""The pathway view in a real browser: Debian's headless Chromium, driven by Playwright, through a full EHR launch
against the SMART test server and Medplum. Screenshots go to docs/images/ (the README shows them).

Chromium is a system package (`make system-packages` installs it; Playwright's own browser download is not
possible here): without it these tests fail and say so, they are never skipped.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.smart.authserver import SmartTestServer
from tests.smart.conftest import Service

CHROMIUM = "/usr/bin/chromium"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WAIT_MS = 15_000  # every wait is bounded: a page that does not come is a failure, not a hang


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if executable is None:
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM}): the pathway view's browser tests need Debian's `chromium` "
            "package. `make test` installs it (`make system-packages`); or run `apt-get install chromium`."
        )
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"], timeout=WAIT_MS)
        yield browser
        browser.close()


def open_pathway(
    chromium: Browser, service: Service, smart: SmartTestServer, patient: str, *, width: int = 1100
) -> Page:
    context = chromium.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
    loopback_only(context)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(service.launch_url(smart.fhir_base, smart.new_launch(patient)))
    page.wait_for_url("**/smart/pathway/*")
    page.wait_for_load_state("load")
    assert page.title().startswith("DVT pathway")
    return page


def loopback_only(context: BrowserContext) -> None:
    """The browser talks to the test's servers only: a link out (the references) is never followed to the network."""
    context.route(re.compile(r"^(?!http://127\.0\.0\.1[:/])"), lambda route: route.abort())


def vein(page: Page, name: str, side: str) -> dict[str, Any]:
    element = page.locator(f'svg path.vein[data-vein="{name}"][data-side="{side}"]')
    assert element.count() == 1, (name, side)
    return {
        "state": element.get_attribute("data-state"),
        "class": element.get_attribute("data-class"),
        "title": element.locator("title").text_content(),
    }


def thrombosed(page: Page) -> set[tuple[str, str, str]]:
    marked = page.locator('svg [data-vein][data-state]:not([data-state="clear"])')
    return {
        (
            marked.nth(i).get_attribute("data-side"),
            marked.nth(i).get_attribute("data-vein"),
            marked.nth(i).get_attribute("data-state"),
        )
        for i in range(marked.count())
    }


def column(page: Page, heading: str) -> str:
    return page.locator("section.column", has=page.get_by_role("heading", name=heading)).inner_text()


def screenshot(page: Page, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name), full_page=True, animations="disabled", caret="hide")


# --------------------------------------------------------------------------------------------------------------------
def test_gastrocnemius_dvt_with_serial_imaging(chromium: Browser, service: Service, smart: SmartTestServer) -> None:
    page = open_pathway(chromium, service, smart, "distal-muscular-no-risk-factors")
    try:
        assert thrombosed(page) == {("right", "gastrocnemius", "thrombus")}
        marked = vein(page, "gastrocnemius", "right")
        assert marked["class"] == "distal-muscular"
        assert marked["title"] == "Right gastrocnemius vein: thrombus, first seen 15 Mar 2026"
        assert vein(page, "gastrocnemius", "left")["state"] == "clear"
        figure = page.get_by_role("img", name="Deep veins of both legs, thrombosed veins marked")
        assert figure.count() == 1

        summary = page.locator("#summary").inner_text()
        assert "Distal DVT: serial duplex imaging recommended" in summary
        assert "CHEST 2016 Grade 2C" in summary

        events = page.locator("ol.events > li")
        kinds = [events.nth(i).get_attribute("data-kind") for i in range(events.count())]
        assert kinds.count("ultrasound") == 1
        assert kinds.count("d-dimer") == 1
        timeline = page.locator("#timeline").inner_text()
        assert "Venous duplex ultrasound, both legs" in timeline
        assert "D-dimer 320 ng/mL" in timeline
        scans = page.locator("ul.scans > li")
        assert [scans.nth(i).get_attribute("data-day") for i in range(scans.count())] == ["7", "14"]
        assert {scans.nth(i).get_attribute("data-status") for i in range(scans.count())} == {"proposed"}

        serial = column(page, "For serial imaging (1)")
        assert "confined to the muscular calf veins" in serial
        assert "venous duplex ultrasound, 15 Mar 2026" in serial
        assert "Acute embolism and thrombosis of right calf muscular vein, 15 Mar 2026" in serial
        assert "None found in the record." in column(page, "For anticoagulation (0)")
        assert "Kret" in page.locator("#evidence").inner_text()
        assert "Observation/" not in page.content()  # sources in words, never raw ids
        screenshot(page, "pathway-gastrocnemius.png")
    finally:
        page.context.close()


def test_extension_between_studies(chromium: Browser, service: Service, smart: SmartTestServer) -> None:
    page = open_pathway(chromium, service, smart, "extension-new-calf-vein")
    try:
        assert thrombosed(page) == {("left", "gastrocnemius", "thrombus"), ("left", "peroneal", "extension")}
        assert vein(page, "peroneal", "left")["title"] == "Left peroneal vein: extension, first seen 13 Mar 2026"
        assert "thrombus now also in the peroneal vein" in page.locator("#legs").inner_text()
        studies = page.locator('ol.events > li[data-kind="ultrasound"]')
        assert studies.count() == 2
        later = studies.nth(1).inner_text()
        assert "13 Mar 2026" in later
        assert "extension" in later
        assert "day 7 scan" in later
        assert "Thrombus, left leg: gastrocnemius vein, peroneal vein" in later
        scans = page.locator("ul.scans > li")
        assert scans.nth(0).get_attribute("data-status") == "done"
        assert scans.nth(1).get_attribute("data-status") == "superseded"
        assert "Distal DVT extended on repeat imaging" in page.locator("#summary").inner_text()
        assert "length > 5 cm or ≥ 2 veins" in column(page, "For anticoagulation (1)")
        screenshot(page, "pathway-extension.png")
    finally:
        page.context.close()


def test_patient_on_anticoagulation(chromium: Browser, service: Service, smart: SmartTestServer) -> None:
    page = open_pathway(chromium, service, smart, "distal-on-treatment-apixaban")
    try:
        assert thrombosed(page) == {("left", "peroneal", "thrombus")}
        assert vein(page, "peroneal", "left")["class"] == "distal-axial"
        order = page.locator('ol.events > li[data-kind="anticoagulant"]')
        assert order.count() == 1
        assert "Apixaban ordered" in order.inner_text()
        assert "treatment dose" in order.inner_text()
        assert "Isolated distal DVT, anticoagulated." in page.locator("#summary").inner_text()
        assert "Anticoagulated: no serial imaging schedule." in page.locator("#timeline").inner_text()
        factors = column(page, "For anticoagulation (2)")
        assert "positive D-dimer" in factors
        assert "D-dimer 900 ng/mL FEU, 13 Mar 2026" in factors
        screenshot(page, "pathway-anticoagulated.png")
    finally:
        page.context.close()


def test_factors_on_both_sides_and_high_bleeding_risk(
    chromium: Browser, service: Service, smart: SmartTestServer
) -> None:
    page = open_pathway(chromium, service, smart, "shared-decision-high-bleeding")
    try:
        assert page.locator(".bleeding-category").get_attribute("data-category") == "high"
        bleeding = page.locator("#bleeding").inner_text()
        assert "age > 65" in bleeding
        assert "has not been validated" in bleeding
        assert "high bleeding risk" in column(page, "For serial imaging (1)") or "high bleeding risk" in page.content()
        assert (
            "Distal DVT: anticoagulation or serial imaging (shared decision)" in page.locator("#summary").inner_text()
        )
    finally:
        page.context.close()


def test_repeat_scan_ordered(chromium: Browser, service: Service, smart: SmartTestServer) -> None:
    page = open_pathway(chromium, service, smart, "surveillance-repeat-ordered")
    try:
        statuses = page.locator("ul.scans > li")
        assert "ordered" in [statuses.nth(i).get_attribute("data-status") for i in range(statuses.count())]
        assert "Isolated distal DVT under serial imaging." in page.locator("#summary").inner_text()
    finally:
        page.context.close()


def test_keyboard_reaches_every_section(chromium: Browser, service: Service, smart: SmartTestServer) -> None:
    page = open_pathway(chromium, service, smart, "extension-new-calf-vein")
    try:
        reached = []
        for _ in range(9):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        assert reached[0] == "Skip to the content"
        sections = ["Summary", "Leg veins", "Timeline", "Factors", "Bleeding risk", "Not assessed", "Evidence"]
        assert reached[1:8] == sections
        for name, target in zip(
            sections, ["summary", "legs", "timeline", "factors", "bleeding", "not-assessed", "evidence"], strict=True
        ):
            page.get_by_role("link", name=name, exact=True).focus()
            page.keyboard.press("Enter")
            page.wait_for_function(f"document.activeElement && document.activeElement.id === '{target}'")
        # The skip link, the first stop of a freshly loaded page, moves focus to the content. Loaded again without
        # the fragment the links above left in the URL (a reload would start from that section).
        page.goto(page.url.split("#")[0])
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.wait_for_function("document.activeElement && document.activeElement.id === 'main'")
    finally:
        page.context.close()


def test_readable_at_360_px_without_horizontal_scroll(
    chromium: Browser, service: Service, smart: SmartTestServer
) -> None:
    page = open_pathway(chromium, service, smart, "extension-new-calf-vein", width=360)
    try:
        widths = page.evaluate(
            "({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, view: window.innerWidth})"
        )
        assert widths["doc"] <= widths["view"], widths
        assert widths["body"] <= widths["view"], widths
        svg = page.locator("svg.legs-svg").bounding_box()
        assert svg is not None
        assert svg["width"] <= 360
        screenshot(page, "pathway-360.png")
    finally:
        page.context.close()


def test_the_token_is_out_of_reach_of_the_page(chromium: Browser, service: Service, smart: SmartTestServer) -> None:
    page = open_pathway(chromium, service, smart, "distal-on-treatment-apixaban")
    try:
        token = smart.issued_tokens()[-1]
        assert page.evaluate("document.cookie") == ""  # HttpOnly
        assert token not in page.content()
        cookies = page.context.cookies()
        assert cookies
        assert all(c["httpOnly"] for c in cookies)
        assert all(token not in c["value"] for c in cookies)
    finally:
        page.context.close()


def test_a_refused_launch_is_a_page_in_the_browser(chromium: Browser, service: Service, smart: SmartTestServer) -> None:
    context = chromium.new_context()
    loopback_only(context)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        smart.token_error = "invalid_grant"
        response = page.goto(service.launch_url(smart.fhir_base, smart.new_launch("extension-new-calf-vein")))
        assert response is not None
        assert response.status == 502
        assert page.get_by_role("heading", level=1).inner_text() == "The EHR did not give this app access"
        assert "invalid_grant" in page.locator("main").inner_text()
    finally:
        context.close()
