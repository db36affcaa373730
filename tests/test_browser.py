"""JupyterLab in a real browser: open notebook 00, run it, move a widget and see the figure change.

Chromium comes from Debian's package (``.ci/run`` installs it), driven by Playwright from PyPI through
its executable path: ``playwright install`` would download a browser, which this setup cannot. Skipped
where neither is installed.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]   # the checkout under test


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
NOTEBOOK = "notebooks/00_setup_and_data.ipynb"
TOKEN = "course-browser-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lab(tmp_path):
    """A JupyterLab server on a copy of the notebook (autosave must not touch the repository's), smoke
    profile, reference solutions for the stubs."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO / NOTEBOOK, tmp_path / NOTEBOOK)
    port = _free_port()
    env = {**os.environ, "COURSE_PROFILE": "smoke", "COURSE_SOLUTIONS": "1",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp_path}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not answer within 2 minutes")
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_notebook_00_runs_in_jupyterlab_and_its_widget_redraws_the_figure(lab, tmp_path):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{lab}/lab/tree/{NOTEBOOK}?token={TOKEN}")
            page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
            select = page.locator(".jp-Dialog button", has_text="Select")      # the kernel dialog, if it asks
            try:
                select.first.wait_for(timeout=15_000)
                select.first.click()
            except sync_api.TimeoutError:
                pass
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
            slider = page.locator(".widget-slider", has_text="page").first
            slider.wait_for(timeout=300_000)
            figure = slider.locator("xpath=ancestor::div[contains(@class,'widget-interact')]").locator("img").first
            figure.wait_for(timeout=120_000)
            before = figure.get_attribute("src")
            handle = slider.locator(".noUi-handle").first
            handle.focus()
            page.keyboard.press("ArrowRight")
            for _ in range(120):                  # interact redraws: a new <img> replaces the old one
                if figure.get_attribute("src") != before:
                    break
                page.wait_for_timeout(500)
            assert figure.get_attribute("src") != before, "moving the page slider did not redraw the figure"
            slider.get_by_text("1", exact=True).wait_for(timeout=10_000)       # its readout says page 1
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=300_000)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                  has_text="Traceback")
            assert errors.count() == 0
        finally:
            page.screenshot(path=str(tmp_path / "jupyterlab.png"), full_page=False)
            browser.close()
    assert (tmp_path / "jupyterlab.png").stat().st_size > 10_000
