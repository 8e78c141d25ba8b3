"""Take the README's pictures (docs/images/report.png, docs/images/serve.png) with Debian's chromium.

Usage: .venv/bin/python docs/screenshots.py

On synthetic data written to a temporary folder: a benchmark of three classical methods (its report),
and ``brainmri serve``'s page after a slice was dropped on it (a tiny CNN trained for the picture).
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import brainmri
from brainmri.data.synthetic import write_demo_data

IMAGES = Path(__file__).resolve().parent / "images"
CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    from playwright.sync_api import sync_playwright

    from brainmri.serve.app import create_app

    work = Path(tempfile.mkdtemp(prefix="brainmri-screenshots-"))
    data = write_demo_data(work / "data", n=32, seed=0, size=64)
    cnn = {"size": 64, "width": 8, "epochs": 12, "batch_size": 16}
    run = brainmri.benchmark(
        data, ["glcm-svm", "multifeature-rf", "rf"], out=work / "bench", cv=2, n_boot=200, cache_dir=False, n_jobs=1
    )
    bundle = brainmri.train(data, "ayadi-cnn", out=work / "cnn", params=cnn, cache_dir=False, n_jobs=1, device="cpu")
    image = sorted((data / "glioma").glob("*.png"))[0]
    print(
        "the CNN calls the pictured slice",
        dict(zip(bundle.classes_, bundle.predict_proba([str(image)])[0].round(3), strict=True)),
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(run.report.as_uri() + "#results")
        page.screenshot(path=str(IMAGES / "report.png"))
        with _served(create_app(bundle)) as url:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url)
            page.set_input_files("#file", str(image))
            page.locator("#overlay").wait_for(state="visible")
            page.screenshot(path=str(IMAGES / "serve.png"))
        browser.close()
    print(f"wrote {IMAGES / 'report.png'} and {IMAGES / 'serve.png'}")


class _served:
    """``app`` served by uvicorn on a free localhost port, in a thread (a context giving its URL)."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


if __name__ == "__main__":
    main()
