"""Helpers for tests that drive a real Jupyter kernel (ipykernel over jupyter_client)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

from jupyter_client.manager import start_new_kernel


@contextlib.contextmanager
def kernel_in(work: Path, cache: Path, *, arguments: tuple[str, ...] = (),
              **env: str) -> Iterator[tuple[object, object]]:
    """A kernel running in ``work`` with ``cache`` as its wasi-magic cache and the
    extension loaded (``arguments``: the kernel's command-line options, e.g. traitlets
    settings); yields ``(manager, client)`` and shuts it down afterwards."""
    full_env = {**os.environ, "WASI_MAGIC_CACHE": str(cache), **env}
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(work), env=full_env,
                                       extra_arguments=list(arguments))
    try:
        execute(client, "%load_ext wasi_magic")
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def execute(client, code: str, timeout: float = 300) -> list[dict]:
    """Run ``code``; return the iopub messages of that execution, in order."""
    msg_id = client.execute(code)
    messages = []
    while True:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
        messages.append(msg)


def streams(messages: list[dict], name: str) -> str:
    """The text a cell wrote to ``name`` ('stdout' or 'stderr')."""
    return "".join(m["content"]["text"] for m in messages
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)


def errors(messages: list[dict]) -> list[dict]:
    """The contents of the cell's error messages (ename, evalue, traceback)."""
    return [m["content"] for m in messages if m["msg_type"] == "error"]


def run_and_interrupt(manager, client, cell: str, when: str = "running",
                      stream: str = "stdout") -> tuple[list[dict], float]:
    """Execute ``cell`` and press Interrupt once ``when`` shows in ``stream`` (or in the
    status display, for ``stream='display'``).

    Returns the cell's messages and the seconds from Interrupt to a free kernel.
    """
    msg_id = client.execute(cell)
    messages: list[dict] = []
    pressed = None
    while True:
        # A guest that Interrupt did not stop would run on: this bound only tells
        # "stopped" from "never stopped".
        msg = client.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        messages.append(msg)
        if pressed is None and _shows(msg, when, stream):
            pressed = time.perf_counter()
            manager.interrupt_kernel()
    assert pressed is not None, f"{when!r} never showed: {messages}"
    return messages, time.perf_counter() - pressed


def _shows(msg: dict, text: str, stream: str) -> bool:
    content = msg["content"]
    if stream == "display":
        return (msg["msg_type"] in ("display_data", "update_display_data")
                and text in content["data"].get("text/plain", ""))
    return msg["msg_type"] == "stream" and content["name"] == stream and text in content["text"]
