"""The capability panel in a real browser: JupyterLab driven by Playwright in headless Chromium.

A student's view: run ``%%wasi --panel``, untick the directory and see the
guest refused, tick it again, edit a variable. Screenshots go to the test's
temporary folder; the click-to-output latency of a toggle is measured in the
page and printed (``pytest -s`` shows it).

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the ``playwright``
package; Playwright's own browser download is not used. A missing browser is a
failure, not a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import nbformat
import pytest

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

CELL = """\
%%wasi --panel --dir data::/data --env MY_VAR=hello
import os
print(open("/data/input.txt").read().strip())
print("MY_VAR =", os.environ.get("MY_VAR"))
"""

# The guest pauses until the test opens the gate, so "output streams while the
# guest runs" is checked by what the page shows, not by how fast it shows it.
STREAM_CELL = """\
%%wasi --panel --dir gate::/gate
import os, time
print("before the pause", flush=True)
while not os.path.exists("/gate/open"):
    time.sleep(0.05)
os.remove("/gate/open")
print("after the pause")
"""

FILE_TEXT = "content of the granted file"
REFUSED = "FileNotFoundError"
TOGGLES = 10


def chromium_path() -> str:
    """Debian's chromium (or ``$WASI_MAGIC_CHROMIUM``); fails the test clearly when missing."""
    path = os.environ.get("WASI_MAGIC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Chromium is not installed, so the panel cannot be tested in a browser. "
                    "Install it with: apt-get install -y chromium (.ci/run does this), or set "
                    "WASI_MAGIC_CHROMIUM to a Chromium binary.")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answering(url: str, server: subprocess.Popen, log: Path,
                         timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def write_notebook(path: Path, cell: str) -> None:
    """A notebook with ``%load_ext wasi_magic`` and then ``cell``."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell("%load_ext wasi_magic"),
                      nbformat.v4.new_code_cell(cell)]
    nbformat.write(notebook, path)


def quiet_lab_settings(folder: Path) -> None:
    """JupyterLab user settings that keep pop-ups (news, update checks) off the page."""
    target = folder / "@jupyterlab" / "apputils-extension"
    target.mkdir(parents=True)
    (target / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "doNotDisturbMode": True, "fetchNews": "false"}))


@contextlib.contextmanager
def jupyter_server(app: str, shared_cache: Path, tmp_path_factory) -> Iterator[Callable[[str], str]]:
    """A running ``jupyter lab`` or ``jupyter notebook`` (7) serving a temporary folder;
    yields ``url(notebook name)``."""
    root = tmp_path_factory.mktemp(app)
    (root / "data").mkdir()
    (root / "data" / "input.txt").write_text(FILE_TEXT + "\n")
    write_notebook(root / "panel.ipynb", CELL)
    write_notebook(root / "stream.ipynb", STREAM_CELL)
    (root / "gate").mkdir()
    state = tmp_path_factory.mktemp(f"{app}-state")
    quiet_lab_settings(state / "settings")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "WASI_MAGIC_CACHE": str(shared_cache),
           "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces")}
    log = state / "jupyter.log"
    extra = ["--LabApp.news_url=None"] if app == "lab" else []
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", app, "--allow-root", "--no-browser",
             "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", *extra],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=root)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/api/status?token={token}", server, log)
        path = "lab/tree" if app == "lab" else "notebooks"

        def url(name: str) -> str:
            return f"{base}/{path}/{name}?token={token}"
        url.root = root  # type: ignore[attr-defined]  # the folder the notebooks run in
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def lab(shared_cache: Path, tmp_path_factory) -> Iterator[Callable[[str], str]]:
    """A running ``jupyter lab``; yields ``url(notebook name)``."""
    with jupyter_server("lab", shared_cache, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium driven by Playwright, with a fresh profile."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The playwright package is missing: pip install -e '.[test]'.")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 2200})
        try:
            yield context
        finally:
            context.close()


def open_and_run(browser, url: str):
    """Open a notebook in a new tab, accept the kernel dialog, run its cells; wait for the panel."""
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    accept_kernel_dialog(page)
    page.click(".jp-Notebook .jp-Cell .jp-InputArea-editor")
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector(".wasi-panel", timeout=240_000)  # a first build takes ~10-20 s
    return page


def accept_kernel_dialog(page, wait_ms: int = 5000) -> None:
    """Accept JupyterLab's 'Select Kernel' dialog if it appears."""
    try:
        page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=wait_ms)
    except Exception:  # noqa: BLE001 - no dialog this time
        return
    page.click(".jp-Dialog .jp-mod-accept")


def output_text(page) -> str:
    return page.inner_text(".wasi-output")


def wait_for_output(page, present: str, absent: str | None = None, timeout: float = 30_000) -> None:
    """Wait until the panel's output shows ``present`` (and not ``absent``)."""
    page.wait_for_function(
        """([present, absent]) => {
            const out = document.querySelector('.wasi-output');
            if (!out) return false;
            const text = out.innerText;
            return text.includes(present) && !(absent && text.includes(absent));
        }""", arg=[present, absent], polling="raf", timeout=timeout)


TIMED_TOGGLE = """
([present, absent]) => new Promise((resolve, reject) => {
    const out = document.querySelector('.wasi-output');
    const box = document.querySelector('.wasi-dir-toggle input[type=checkbox]');
    const started = performance.now();
    const done = () => {
        const text = out.innerText;
        if (text.includes(present) && !text.includes(absent)) {
            observer.disconnect();
            resolve(performance.now() - started);
        }
    };
    const observer = new MutationObserver(done);
    observer.observe(out, {childList: true, subtree: true, characterData: true});
    box.click();
    setTimeout(() => { observer.disconnect(); reject(new Error('no new output in 10 s')); }, 10000);
})
"""


def test_chromium_and_playwright_are_installed() -> None:
    """Not a skip: without the browser the panel is untested, so the suite fails here, clearly."""
    assert Path(chromium_path()).exists()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("The playwright package is missing: pip install -e '.[test]'.")


def test_panel_in_jupyterlab(browser, lab, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = open_and_run(browser, lab("panel.ipynb"))
    wait_for_output(page, FILE_TEXT)
    assert "MY_VAR = hello" in output_text(page)
    command = page.inner_text(".wasi-command")
    assert "--dir" in command and "::/data" in command and "--env MY_VAR=hello" in command
    assert page.is_disabled(".wasi-network input[type=checkbox]")
    page.locator(".wasi-panel").screenshot(path=str(shots / "1-granted.png"))

    # Untick the directory: the guest is refused, the command line loses --dir.
    page.click(".wasi-dir-toggle input[type=checkbox]")
    wait_for_output(page, REFUSED, FILE_TEXT)
    assert "--dir" not in page.inner_text(".wasi-command")
    assert output_text(page).count("MY_VAR = hello") == 0  # the traceback stops the guest first
    page.locator(".wasi-panel").screenshot(path=str(shots / "2-refused.png"))

    # Tick it again: the content is back, replacing the error.
    page.click(".wasi-dir-toggle input[type=checkbox]")
    wait_for_output(page, FILE_TEXT, REFUSED)

    # Change the variable's value (sent on Enter): the guest prints the new value.
    page.fill(".wasi-env-value input", "changed in the browser")
    page.press(".wasi-env-value input", "Enter")
    wait_for_output(page, "MY_VAR = changed in the browser", "MY_VAR = hello")
    assert "--env 'MY_VAR=changed in the browser'" in page.inner_text(".wasi-command")
    page.locator(".wasi-panel").screenshot(path=str(shots / "3-env-changed.png"))

    # Latency from a click on the checkbox to the new output in the page.
    latencies = []
    for i in range(TOGGLES):
        present, absent = (REFUSED, FILE_TEXT) if i % 2 == 0 else (FILE_TEXT, REFUSED)
        latencies.append(page.evaluate(TIMED_TOGGLE, [present, absent]))
    assert output_text(page).count(FILE_TEXT) == 1  # an even number of toggles: granted again
    median = statistics.median(latencies)
    print(f"\ntoggle latency (click to new output) over {TOGGLES} toggles: median "
          f"{median:.0f} ms, min {min(latencies):.0f} ms, max {max(latencies):.0f} ms; "
          f"screenshots in {shots}")
    (shots / "latency.json").write_text(json.dumps({"median_ms": median, "all_ms": latencies}))
    page.screenshot(path=str(shots / "4-page.png"))


def test_a_change_and_its_output_fit_on_a_small_laptop_screen(browser, lab, tmp_path: Path) -> None:
    """At 1366x768 the whole panel, from its first checkbox to the end of the output it
    re-runs into, is on screen at once (the imports table is folded)."""
    page = open_and_run(browser, lab("panel.ipynb"))
    page.set_viewport_size({"width": 1366, "height": 768})
    wait_for_output(page, FILE_TEXT)
    page.evaluate("document.querySelector('.wasi-panel').scrollIntoView({block: 'start'})")
    page.click(".wasi-dir-toggle input[type=checkbox]")
    wait_for_output(page, REFUSED, FILE_TEXT)
    toggle = page.locator(".wasi-dir-toggle").bounding_box()
    output = page.locator(".wasi-output").bounding_box()
    page.screenshot(path=str(tmp_path / "1366x768.png"))
    assert toggle is not None and output is not None
    assert toggle["y"] >= 0 and output["y"] + output["height"] <= 768, (toggle, output)
    assert not page.locator(".wasi-imports table").first.is_visible()  # folded
    page.click(".wasi-imports summary")
    assert page.locator(".wasi-imports table").first.is_visible()


def test_output_streams_while_the_guest_runs(browser, lab) -> None:
    gate = lab.root / "gate" / "open"
    page = open_and_run(browser, lab("stream.ipynb"))
    for rerun in (False, True):  # the run when the panel opens, then its Run button
        if rerun:
            page.click(".wasi-run")
        # The first line shows while the guest is still paused, replacing the last run's
        # output...
        wait_for_output(page, "before the pause", "after the pause")
        assert "after the pause" not in output_text(page)
        # ...and the rest follows once the guest is let go.
        gate.touch()
        wait_for_output(page, "after the pause")
        assert output_text(page).count("before the pause") == 1
        assert not gate.exists()  # the guest itself closed the gate behind it


def test_panel_in_notebook7(browser, shared_cache: Path, tmp_path_factory) -> None:
    """The same panel in Jupyter Notebook 7: shown, and a toggle re-runs the guest."""
    with jupyter_server("notebook", shared_cache, tmp_path_factory) as url:
        page = open_and_run(browser, url("panel.ipynb"))
        wait_for_output(page, FILE_TEXT)
        page.click(".wasi-dir-toggle input[type=checkbox]")
        wait_for_output(page, REFUSED, FILE_TEXT)
        page.click(".wasi-dir-toggle input[type=checkbox]")
        wait_for_output(page, FILE_TEXT, REFUSED)
        page.close()
