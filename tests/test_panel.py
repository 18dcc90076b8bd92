"""The capability panel without a browser: widgets set from Python, real re-runs of a component."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wasi_magic import Capabilities
from wasi_magic.limits import Limits
from wasi_magic.widgets import (NETWORK_NOTE, CapabilityPanel, command_line, grant_for,
                                OutputStream, import_rows, output_text,
                                size_text)


@pytest.fixture()
def panel(probe, sandbox: Path) -> CapabilityPanel:
    """The probe reading /data/input.txt, with ``data`` granted and one variable set."""
    caps = Capabilities.parse(dirs=["data::/data"], env=["GREETING=hi"],
                              args=["read", "/data/input.txt"], cwd=sandbox)
    made = CapabilityPanel(probe, caps, cwd=sandbox)
    made.run()
    return made


def test_first_run_fills_the_output(panel: CapabilityPanel) -> None:
    assert output_text(panel.output) == "read: ok hello file\n"
    assert panel.last_result is not None and panel.last_result.ok
    assert panel.runs == 1
    assert "exit status 0" in panel.status.value
    assert panel.message_text == ""


def test_unticking_a_directory_reruns_without_it(panel: CapabilityPanel, sandbox: Path) -> None:
    grant = f"--dir {sandbox / 'data'}::/data --env"
    assert grant in panel.command_text
    panel.dir_rows[0].enabled.value = False
    assert output_text(panel.output) == (
        "read: FileNotFoundError: [Errno 44] No such file or directory: '/data/input.txt'\n")
    assert "--dir" not in panel.command_text
    assert panel.runs == 2
    panel.dir_rows[0].enabled.value = True
    assert output_text(panel.output) == "read: ok hello file\n"  # replaced, not appended
    assert grant in panel.command_text


def test_read_only_toggle(panel: CapabilityPanel, sandbox: Path) -> None:
    panel.args.value = "write /data/new.txt"
    assert output_text(panel.output) == "write: ok\n"
    panel.dir_rows[0].mode.value = "ro"
    assert output_text(panel.output).startswith("write: PermissionError")
    assert "::/data::ro" in panel.command_text
    assert (sandbox / "data" / "new.txt").read_text() == "guest was here\n"


def test_environment_edit_untick_and_add(panel: CapabilityPanel) -> None:
    panel.args.value = "env"
    assert output_text(panel.output) == "env: [('GREETING', 'hi')]\n"
    panel.env_rows[0].value.value = "hello there"
    assert output_text(panel.output) == "env: [('GREETING', 'hello there')]\n"
    assert "--env 'GREETING=hello there'" in panel.command_text
    panel.env_rows[0].enabled.value = False
    assert output_text(panel.output) == "env: []\n"
    panel.new_env_name.value, panel.new_env_value.value = "OTHER", "2"
    panel.add_env_button.click()
    assert output_text(panel.output) == "env: [('OTHER', '2')]\n"
    assert [row.name for row in panel.env_rows] == ["GREETING", "OTHER"]


def test_arguments_and_stdin(panel: CapabilityPanel) -> None:
    panel.args.value = "stdin"
    assert output_text(panel.output) == "stdin: ''\n"
    panel.stdin.value = "typed text"
    assert output_text(panel.output) == "stdin: 'typed text'\n"
    assert panel.command_text.startswith("printf %s 'typed text' | wasmtime run")
    assert "printf %s &#x27;typed text&#x27; | wasmtime run" in panel.command.value


def test_adding_a_directory(panel: CapabilityPanel, sandbox: Path) -> None:
    (sandbox / "more").mkdir()
    (sandbox / "more" / "m.txt").write_text("more text")
    panel.args.value = "read /m/m.txt"
    assert "FileNotFoundError" in output_text(panel.output)
    panel.new_dir_host.value, panel.new_dir_guest.value = "more", "/m"
    panel.new_dir_ro.value = True
    panel.add_dir_button.click()
    assert output_text(panel.output) == "read: ok more text\n"
    assert f"{sandbox / 'more'}::/m::ro" in panel.command_text


def test_invalid_input_is_a_message_not_a_traceback(panel: CapabilityPanel) -> None:
    runs = panel.runs
    assert panel.add_dir("no-such-folder", "/x") is None
    assert "does not exist" in panel.message_text and "Traceback" not in panel.message_text
    assert len(panel.dir_rows) == 1 and panel.runs == runs
    assert panel.add_dir("data", "/data") is None  # the same guest path twice
    assert "already in the list" in panel.message_text
    assert panel.add_env("BAD-NAME", "x") is None
    assert "NAME" in panel.message_text
    panel.args.value = "read 'unclosed"
    assert "Not run: arguments:" in panel.message_text and panel.runs == runs
    assert panel.output.outputs == ()
    panel.args.value = "read /data/input.txt"
    assert panel.message_text == "" and output_text(panel.output) == "read: ok hello file\n"
    panel.timeout.value = "soon"
    assert "Not run: timeout 'soon'" in panel.message_text


def test_a_host_folder_removed_after_granting(panel: CapabilityPanel, sandbox: Path) -> None:
    (sandbox / "data" / "input.txt").unlink()
    (sandbox / "data" / "sub").rmdir()
    (sandbox / "data").rmdir()
    assert panel.run() is None
    assert "does not exist" in panel.message_text


def test_guest_failure_shows_the_status_in_the_output(panel: CapabilityPanel) -> None:
    panel.args.value = "raise"
    assert "ValueError: the probe raised on purpose" in output_text(panel.output, "stderr")
    assert output_text(panel.output, "stderr").rstrip().endswith("[exit status 1]")
    assert "exit status 1" in panel.status.value


def test_limits_are_wired_to_the_run(panel: CapabilityPanel) -> None:
    assert not panel.fuel.disabled and not panel.max_memory.disabled
    panel.fuel.value = "1000"  # too little even to instantiate: reported, not raised
    assert "fuel" in panel.message_text + output_text(panel.output, "stderr")
    assert "-W fuel=1000" in panel.command_text
    panel.fuel.value = "100000"  # instantiates, then runs out
    assert "stopped by the fuel limit" in output_text(panel.output, "stderr")
    assert "fuel" in panel.status.value
    panel.fuel.value = ""
    panel.max_memory.value = "512MiB"
    assert output_text(panel.output) == "read: ok hello file\n"
    assert f"-W max-memory-size={512 << 20}" in panel.command_text
    panel.timeout.value = "0"
    assert "timeout=" not in panel.command_text


def test_network_is_shown_honestly(panel: CapabilityPanel) -> None:
    assert panel.network.disabled and not panel.network.value
    assert "Wasmtime 48" in NETWORK_NOTE and "Wasmtime 48" in panel.network_note.value
    assert "sockets" in panel.summary()


def test_imports_beside_grants(panel: CapabilityPanel) -> None:
    assert "wasi:filesystem/preopens@0.2.9" in panel.imports
    assert "granted: /data" in panel.imports_table.value
    panel.dir_rows[0].enabled.value = False
    assert "nothing: no directory granted" in panel.imports_table.value
    caps = Capabilities(env=(("A", "1"),), args=("x",))
    assert grant_for("wasi:cli/environment@0.2.9", caps) == "A; 1 argument"
    assert grant_for("wasi:sockets/tcp@0.2.9", caps).startswith("denied")


def test_text_fallback(panel: CapabilityPanel, sandbox: Path) -> None:
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    text = bundle["text/plain"]
    assert f"dir  {sandbox / 'data'} -> /data (read-write)" in text
    assert "env  GREETING=hi" in text
    assert f"command: wasmtime run -W timeout=60s --dir {sandbox / 'data'}::/data" in text
    panel.dir_rows[0].enabled.value = False
    text = panel._repr_mimebundle_()["text/plain"]
    assert "not granted (unticked):" in text and "--dir" not in text


def test_prepare_is_applied_but_not_shown(probe, sandbox: Path) -> None:
    panel = CapabilityPanel(probe, Capabilities(args=("env",)), cwd=sandbox,
                            prepare=lambda caps: caps.replace(env=caps.env + (("HIDDEN", "1"),)))
    panel.run()
    assert output_text(panel.output) == "env: [('HIDDEN', '1')]\n"
    assert "HIDDEN" not in panel.command_text and "HIDDEN" not in panel.summary()


def test_command_line_and_sizes(tmp_path: Path) -> None:
    caps = Capabilities(args=("a b",), stdin=b"x")
    line = command_line(caps, Limits(timeout=5, fuel=10))
    assert line == "printf %s x | wasmtime run -W timeout=5s -W fuel=10 cell.wasm 'a b'"
    assert command_line(caps, None) == caps.wasmtime_command()
    assert (size_text(64 << 20), size_text(1000), size_text(None)) == ("64MiB", "1000", "")


def test_magic_panel_in_terminal_ipython(sandbox: Path, capsys) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "wasi_magic")
    old = os.getcwd()
    os.chdir(sandbox)
    try:
        result = shell.run_cell("%%wasi -q --panel --dir data::/data --env V=1\n"
                                "import os\nprint(open('/data/input.txt').read().strip(), "
                                "os.environ['V'])\n")
        out = capsys.readouterr().out
        bad = shell.run_cell("%%wasi --panel --out x\nprint(1)\n")
        err = capsys.readouterr().err
    finally:
        os.chdir(old)
        shell.run_line_magic("unload_ext", "wasi_magic")
    assert result.success
    assert out.startswith("wasi capability panel for cell.wasm\ngranted:\n")
    assert (f"command: wasmtime run -W timeout=60s --dir {sandbox / 'data'}::/data --env V=1 "
            f"cell.wasm") in out
    assert out.endswith("hello file 1\n")
    assert not bad.success or "cannot be combined" in err
    assert "--panel shows the output below the panel" in err


def test_import_rows_group_the_sockets() -> None:
    imports = ["wasi:filesystem/preopens@0.2.9", "wasi:sockets/tcp@0.2.9", "wasi:sockets/udp@0.2.9"]
    rows = import_rows(imports, Capabilities())
    assert rows == [
        ("wasi:filesystem/preopens@0.2.9", "the directories granted with --dir",
         "nothing: no directory granted"),
        ("wasi:sockets/*@0.2.9 (2 interfaces)", "network access: TCP, UDP, DNS",
         "denied: no network from the Python embedding")]


def test_output_stream_publishes_while_running() -> None:
    import time

    import ipywidgets
    old = {"output_type": "stream", "name": "stdout", "text": "old"}
    output = ipywidgets.Output(outputs=(old,))
    stream = OutputStream(output, interval=0.05)
    assert output.outputs == ()  # cleared at once
    out, err = stream.writer("stdout"), stream.writer("stderr")
    out("a")
    out("b")
    time.sleep(0.3)  # no further chunk: the timer publishes what is waiting
    assert output_text(output) == "ab"
    err("c")
    stream.close()
    assert output.outputs == ({"output_type": "stream", "name": "stdout", "text": "ab"},
                              {"output_type": "stream", "name": "stderr", "text": "c"})


def test_the_panel_keeps_grants_as_objects(panel: CapabilityPanel, sandbox: Path) -> None:
    from wasi_magic import DirGrant
    row = panel.dir_rows[0]
    assert row.grant == DirGrant(sandbox / "data", "/data", read_only=False)
    row.mode.value = "ro"
    assert row.grant.read_only and panel.capabilities().dirs == (row.grant,)
    assert panel.capabilities().env == (("GREETING", "hi"),)
    # A host folder with '::' in its name is one folder, not a spec to re-parse.
    odd = sandbox / "a::b"
    odd.mkdir()
    panel.add_dir(str(odd), "/odd", read_only=True)
    assert panel.capabilities().dirs[-1] == DirGrant(odd, "/odd", read_only=True)
    assert panel.message_text == ""


def test_a_link_planted_by_the_guest_is_refused_on_the_next_run(quick_ready, tmp_path: Path) -> None:
    """A guest run from the panel replaces a granted subfolder by a link to '/': the next
    run (any tick) checks every grant again and refuses, naming the link."""
    from wasi_magic.quick import with_source
    (tmp_path / "rw" / "sub").mkdir(parents=True)
    plant = ("import os\nif not os.path.islink('/w/sub'):\n    os.rmdir('/w/sub')\n"
             "    os.symlink('../' * 40, '/w/sub')\nprint(sorted(os.listdir('/s')))\n")
    caps = Capabilities.parse(dirs=["rw::/w", "rw/sub::/s"], cwd=tmp_path)
    panel = CapabilityPanel(quick_ready, caps, cwd=tmp_path,
                            prepare=lambda c: with_source(c, plant))
    assert panel.run() is not None and os.path.islink(tmp_path / "rw" / "sub")
    panel.dir_rows[0].enabled.value = False  # the next run: /s alone
    assert panel.last_result is not None and panel.runs == 1  # refused, not run
    assert "is a symbolic link to '/'" in panel.message_text, panel.message_text
    assert output_text(panel.output) == ""
