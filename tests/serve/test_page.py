"""The page in a real browser: Debian's chromium driven by Playwright against a live uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from brainmri.data.synthetic import synthetic_slice

pytest.importorskip("playwright")
pytestmark = pytest.mark.system  # Debian's chromium: skipped without it, a failure in CI
CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def live_server(app):
    """``app`` served by uvicorn on a free localhost port, in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.slow
def test_the_page_shows_the_class_the_bars_and_the_overlay(cnn_model, tmp_path, write_pil, one_torch_thread):
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    from brainmri.serve.app import create_app

    image = write_pil(
        tmp_path / "glioma.png", (synthetic_slice("glioma", np.random.default_rng(3), size=64) * 255).astype(np.uint8)
    )
    proba = cnn_model.predict_proba([image])[0]
    classes = [str(c) for c in cnn_model.classes_]
    requested, problems = [], []
    with live_server(create_app(cnn_model)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1100})
            page.set_default_timeout(60_000)
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(url)
            expect(page.locator("#disclaimer")).to_contain_text("not a diagnostic device")
            expect(page.locator("#model")).to_contain_text("ayadi-cnn")
            page.set_input_files("#file", str(image))
            expect(page.locator("#predicted")).to_have_text(classes[int(np.argmax(proba))])
            bars = page.locator("#bars .bar")
            expect(bars).to_have_count(len(classes))
            widths = bars.evaluate_all("bars => bars.map(b => [b.dataset.class, parseFloat(b.style.width)])")
            assert [name for name, _ in widths] == classes
            assert [w for _, w in widths] == pytest.approx(100 * proba, abs=0.051)
            overlay = page.locator("#overlay")
            expect(overlay).to_be_visible()
            assert overlay.evaluate("img => img.complete && img.naturalWidth") == 32  # the model's input size
            assert page.locator("#image").evaluate("img => img.naturalWidth") == 32
            page.locator("#opacity").fill("80")
            assert overlay.evaluate("img => getComputedStyle(img).opacity") == "0.8"
            shot = tmp_path / "serve-page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the page: {shot}")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert problems == []
    assert requested and all(u.startswith(url) or u.startswith("data:") for u in requested), requested


@pytest.mark.slow
def test_the_page_asks_for_the_token_and_shows_a_model_without_heatmaps(stand_in, tmp_path, write_pil):
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    from brainmri.serve.app import create_app
    from brainmri.serve.settings import ServeSettings

    image = write_pil(
        tmp_path / "slice.png", (synthetic_slice("notumor", np.random.default_rng(1), size=64) * 255).astype(np.uint8)
    )
    with (
        live_server(create_app(stand_in, ServeSettings(token="page-token-123"))) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            expect(page.locator("#token-box")).to_be_visible()
            expect(page.locator("#error")).to_contain_text("missing token")
            page.fill("#token", "page-token-123")
            page.click("#token-save")
            expect(page.locator("#model")).to_contain_text("stand-in, classes glioma, notumor")
            expect(page.locator("#token-box")).to_be_hidden()
            page.set_input_files("#file", str(image))
            expect(page.locator("#predicted")).to_have_text("notumor")
            expect(page.locator("#bars .bar")).to_have_count(2)
            expect(page.locator("#figure")).to_be_hidden()  # no heatmap asked of a model without one
            expect(page.locator("#error")).to_be_hidden()
        finally:
            browser.close()
