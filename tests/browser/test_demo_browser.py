"""The demo EHR and the trial pages in a real browser: headless Chromium (Debian's ``chromium`` package) driven
by Playwright for Python, against the service started here in demo mode on 127.0.0.1 and a free port.

Run: ``.venv/bin/pytest -q -p no:cacheprovider -m browser``. Needs ``/usr/bin/chromium`` (apt-get install
chromium) and the ``playwright`` Python package; Playwright's own browser downloads are never used.
``TRIAL_CDS_UPDATE_SCREENSHOTS=1`` also rewrites ``docs/screenshots/demo-card.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from served_support import free_port

from cds.demo import load_demo_patients

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshots" / "demo-card.png"
TRIAL = "npc-liver-mets-ldrt"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

playwright_sync = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")


@dataclass
class Service:
    url: str
    app: Any


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``trial-cds serve --demo`` in a thread: demo mode, a fresh database, the real clock (the demo data is
    date-shifted to today when it is loaded, so the patients' labs are as recent as the story says)."""
    import uvicorn

    from cds.api import create_app
    from cds.settings import Settings

    db = tmp_path_factory.mktemp("browser-db") / "cds.sqlite3"
    app = create_app(Settings(demo=True, database_url=f"sqlite:///{db}", log_level="WARNING"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the demo service did not start")
        time.sleep(0.05)
    yield Service(url=f"http://127.0.0.1:{port}", app=app)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_sync.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(15_000)
    yield page
    page.close()
    assert errors == [], f"errors in the page: {errors}"


def open_patient(page: Any, service: Service, patient_id: str) -> Any:
    page.goto(f"{service.url}/demo")
    page.get_by_role("button", name=patient_id).click()
    page.wait_for_selector("#card-count")
    return page.locator("article.card")


def stored_feedback(service: Service) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from cds.store import feedback

    with service.app.state.cds.store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(feedback))]


def activity_json(service: Service) -> dict[str, Any]:
    response = httpx.get(f"{service.url}/trials/{TRIAL}/activity", headers={"Accept": "application/json"})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_demo_page_loads_and_lists_the_demo_patients(page: Any, service: Service) -> None:
    page.goto(f"{service.url}/demo")
    buttons = page.locator("#patients button")
    buttons.first.wait_for()
    today = datetime.now(UTC).date()
    assert sorted(buttons.evaluate_all("bs => bs.map(b => b.dataset.patient)")) == sorted(load_demo_patients(today))
    assert page.title() == "trial-cds demo EHR"


def test_the_address_opens_the_demo_on_a_patient(page: Any, service: Service) -> None:
    page.goto(f"{service.url}/?patient=npc-03")  # / leads to the demo page, the query kept
    page.wait_for_selector("#card-count")
    assert page.locator("#patients button[aria-pressed=true]").get_attribute("data-patient") == "npc-03"
    assert page.locator("#banner").get_by_text("npc-03").count() == 1
    assert "needs review" in page.locator("article.card .summary").first.inner_text()


def test_choosing_a_patient_puts_it_in_the_address(page: Any, service: Service) -> None:
    open_patient(page, service, "npc-01")
    assert page.url.endswith("/demo?patient=npc-01")


def test_the_address_naming_an_unknown_patient_says_so(page: Any, service: Service) -> None:
    page.goto(f"{service.url}/demo?patient=nobody-here")
    alert = page.get_by_role("alert")
    assert 'No demo patient with the id "nobody-here"' in alert.inner_text()
    assert page.locator("#patients button[aria-pressed=true]").count() == 0


def test_eligible_patient_gets_a_likely_eligible_card(page: Any, service: Service) -> None:
    cards = open_patient(page, service, "npc-01")
    assert cards.count() == 1
    card = cards.first
    assert "NPC-LDRT trial: likely eligible" in card.locator(".summary").inner_text()
    assert card.locator(".indicator").inner_text().lower() == "info"
    # The Markdown detail became a checklist of real checkboxes, with the open items first and visible.
    sections = card.locator(".detail details")
    assert sections.first.locator("summary").inner_text().startswith("To confirm")
    assert sections.first.evaluate("d => d.open") is True
    met = sections.last  # every item checked: collapsed
    assert met.locator("summary").inner_text().startswith("Satisfied") and met.evaluate("d => d.open") is False
    assert met.locator("input[type=checkbox]:checked").count() >= 30
    assert card.locator(".detail strong").first.inner_text() == "Likely eligible"
    # Links and the referral suggestion.
    criteria = card.get_by_role("link", name="Trial criteria")
    assert criteria.get_attribute("href") == f"{service.url}/trials/{TRIAL}"
    assert card.get_by_role("button", name="Refer to the NPC-LDRT team").is_enabled()
    reasons = card.locator("select.reason option").all_inner_texts()
    assert "Patient declined trial participation" in reasons

    met.locator("summary").click()  # the clinician opens the met criteria: values and dates
    assert met.evaluate("d => d.open") is True and met.get_by_text("ANC ").first.is_visible()
    shot = page.screenshot(full_page=True)
    assert len(shot) > 20_000
    if os.environ.get("TRIAL_CDS_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(shot)


def test_needs_review_card_says_what_to_order(page: Any, service: Service) -> None:
    card = open_patient(page, service, "npc-03").first
    assert "needs review" in card.locator(".summary").inner_text()
    text = card.locator(".detail").inner_text()
    assert "To confirm: Male, or female and not pregnant" in text and "pregnancy test" in text


def test_not_eligible_patient_gets_no_card(page: Any, service: Service) -> None:
    cards = open_patient(page, service, "npc-43")
    assert cards.count() == 0
    assert "No trial to suggest" in page.locator("#cards").inner_text()


def test_override_posts_feedback_that_is_stored(page: Any, service: Service) -> None:
    card = open_patient(page, service, "npc-02").first
    uuid = card.get_attribute("data-uuid")
    before = activity_json(service)["totals"]
    card.locator("select.reason").select_option(label="Patient declined trial participation")
    card.locator("input.comment").fill("Prefers treatment closer to home")
    card.get_by_role("button", name="Override").click()
    status = card.locator(".status.ok")
    status.wait_for()
    assert "Overridden: Patient declined trial participation" in status.inner_text()

    (row,) = [r for r in stored_feedback(service) if r["card_uuid"] == uuid]
    assert row["outcome"] == "overridden" and row["override_code"] == "patient-declined"
    assert row["has_user_comment"] is True  # the comment itself is never stored
    assert "closer to home" not in json.dumps(stored_feedback(service), default=str)
    after = activity_json(service)["totals"]
    assert after["overridden"] == before["overridden"] + 1
    assert after["override_reasons"]["patient-declined (Patient declined trial participation)"] >= 1


def test_accept_posts_the_accepted_suggestion(page: Any, service: Service) -> None:
    card = open_patient(page, service, "npc-17").first
    uuid = card.get_attribute("data-uuid")
    card.get_by_role("button", name="Refer to the NPC-LDRT team").click()
    card.locator(".status.ok").wait_for()
    (row,) = [r for r in stored_feedback(service) if r["card_uuid"] == uuid]
    assert row["outcome"] == "accepted" and json.loads(row["accepted_suggestions"])
    page.goto(f"{service.url}/trials/{TRIAL}/activity")
    assert page.get_by_role("heading", name="Card activity: NPC-LDRT").is_visible()
    assert int(page.locator("tfoot td").nth(2).inner_text()) >= 1


def test_a_pasted_bundle_is_screened(page: Any, service: Service) -> None:
    patient = load_demo_patients(datetime.now(UTC).date())["npc-17"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in patient.resources]}
    page.goto(f"{service.url}/demo")
    page.get_by_label("Or paste a FHIR R4 Bundle").fill(json.dumps(bundle))
    page.get_by_role("button", name="Open chart").click()
    page.wait_for_selector("#card-count")
    assert "likely eligible" in page.locator("article.card .summary").inner_text()
    page.get_by_label("Or paste a FHIR R4 Bundle").fill('{"resourceType": "Patient"}')
    page.get_by_role("button", name="Open chart").click()
    assert "not a FHIR Bundle" in page.get_by_role("alert").inner_text()


def test_markdown_renderer_never_makes_html_from_data(page: Any, service: Service) -> None:
    page.goto(f"{service.url}/demo")
    rendered = page.evaluate(
        """() => {
            const box = document.createElement("div");
            box.appendChild(markdown("#### Head *it* (2)\\n- [x] **Bold** \\\\<img src=x onerror=alert(1)\\\\> a\\\\_b"
              + "\\n- [ ] <script>alert(2)</script> **unclosed\\ntext with [link](javascript:alert(3))"));
            return {
                html: box.innerHTML, text: box.textContent, imgs: box.querySelectorAll("img,script,a").length,
                boxes: box.querySelectorAll("input:checked").length, em: box.querySelector("summary em")?.textContent,
            };
        }"""
    )
    assert rendered["imgs"] == 0
    assert "<img src=x onerror=alert(1)>" in rendered["text"] and "a_b" in rendered["text"]
    assert "<script>alert(2)</script>" in rendered["text"] and "**unclosed" in rendered["text"]
    assert rendered["boxes"] == 1 and rendered["em"] == "it"
    assert "<strong>Bold</strong>" in rendered["html"]


def test_trial_page_in_the_browser(page: Any, service: Service) -> None:
    page.goto(f"{service.url}/trials/{TRIAL}")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Low-dose radiotherapy")
    anc = page.locator("section#inc_anc")
    assert "ANC ≥ 1.5 × 10⁹/L; latest result within 28 days" in anc.inner_text()
    assert "751-8" in anc.inner_text()  # the LOINC codes used
    long_lists = page.locator("details.vs")
    assert long_lists.count() > 5 and long_lists.first.evaluate("d => d.open") is False
    page.evaluate("() => dispatchEvent(new Event('beforeprint'))")  # printing opens every code list
    assert long_lists.evaluate_all("ds => ds.every(d => d.open)") is True
