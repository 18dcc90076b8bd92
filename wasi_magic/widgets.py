"""The capability panel: tick and untick what a component may touch, and see the result at once.

A thin ipywidgets adapter over the core. :class:`CapabilityPanel` turns its
widgets into :class:`~wasi_magic.capabilities.Capabilities` and
:class:`~wasi_magic.limits.Limits`, re-runs the *already built* component with
:meth:`Sandbox.run <wasi_magic.sandbox.supervisor.Sandbox.run>` on every change (a few
milliseconds; nothing is rebuilt) and replaces the output below the panel.

Where widgets cannot render (nbval, a saved notebook without widget state,
terminal IPython), the panel's ``text/plain`` form lists the grants and the
equivalent ``wasmtime run`` command line; :func:`show_panel` prints that summary
and runs once when there is no Jupyter kernel.
"""

from __future__ import annotations

import html
import os
import shlex
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import ipywidgets as w

from .artifact import Artifact
from .capabilities import Capabilities, DirGrant, check_variable
from .errors import WasiMagicError
from .inspect import WASI_INTERFACES
from .limits import DEFAULT_TIMEOUT, Limits, parse_count, parse_duration, parse_size
from .output import TextCallback
from .result import RunResult
from .sandbox.supervisor import Sandbox, default_sandbox

#: Why the network checkbox is disabled.
NETWORK_NOTE = ("Cannot be granted here: since Wasmtime 48, TCP and UDP are off unless the "
                "host turns them on, and wasmtime-py 50 has no switch for that, so every "
                "socket call in the guest is refused (the wasmtime CLI has -S inherit-network).")

#: Applied to the panel's capabilities just before each run (e.g. quick mode's hidden source).
Prepare = Callable[[Capabilities], Capabilities]


def command_line(caps: Capabilities, limits: Limits | None, wasm: str = "cell.wasm") -> str:
    """``caps.wasmtime_command(wasm)`` with the limits' ``-W`` options after ``wasmtime run``."""
    line = caps.wasmtime_command(wasm)
    options = limits.wasmtime_options() if limits is not None else []
    if not options:
        return line
    plain = caps.replace(stdin=None, stdin_file=None, http=()).wasmtime_command(wasm)
    at = line.index(plain) + len("wasmtime run")
    return line[:at] + " " + shlex.join(options) + line[at:]


def grant_for(interface: str, caps: Capabilities) -> str:
    """What this run grants for one imported interface, in a few words."""
    base = interface.partition("@")[0]
    if base == "wasi:filesystem/preopens":
        if not caps.dirs:
            return "nothing: no directory granted"
        return "granted: " + ", ".join(g.guest + (" (read-only)" if g.read_only else "")
                                       for g in caps.dirs)
    if base == "wasi:filesystem/types":
        return "inside the granted directories" if caps.dirs else "nothing to open"
    if base == "wasi:cli/environment":
        names = ", ".join(name for name, _ in caps.env) or "no variables"
        count = len(caps.args)
        return f"{names}; {count or 'no'} argument{'' if count == 1 else 's'}"
    if base == "wasi:cli/stdin":
        if caps.stdin_file is not None:
            return f"the file {caps.stdin_file}"
        return f"{len(caps.stdin)} bytes of text" if caps.stdin else "empty"
    if base in ("wasi:cli/stdout", "wasi:cli/stderr"):
        return "shown below"
    if base.startswith("wasi:sockets/"):
        return "denied: no network from the Python embedding"
    if base == "wasi-magic:cell/http":
        return ("to " + ", ".join(str(o) for o in caps.http)) if caps.http else \
            "denied: no origin granted (--allow-http)"
    if base.startswith(("wasi:clocks/", "wasi:random/", "wasi:io/", "wasi:cli/")):
        return "always provided"
    return "provided by the host"


#: Imports whose grant the panel controls; the others are always provided.
KEY_IMPORTS = ("wasi:filesystem/", "wasi:cli/environment", "wasi:cli/stdin", "wasi:sockets/",
               "wasi-magic:cell/http")


def import_rows(imports: Sequence[str], caps: Capabilities) -> list[tuple[str, str, str]]:
    """``(import, what it gives, what this run grants)`` rows; sockets share one row."""
    rows = []
    sockets = [name for name in imports if name.startswith("wasi:sockets/")]
    for name in imports:
        if name in sockets[1:]:
            continue
        meaning = WASI_INTERFACES.get(name.partition("@")[0], "")
        label = name
        if name in sockets[:1]:
            version = name.partition("@")[2]
            label = f"wasi:sockets/*{'@' + version if version else ''} ({len(sockets)} interfaces)"
            meaning = "network access: TCP, UDP, DNS"
        rows.append((label, meaning, grant_for(name, caps)))
    return rows


def _html_table(rows: Sequence[tuple[str, str, str]]) -> str:
    body = "".join(f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(meaning)}</td>"
                   f"<td><b>{html.escape(grant)}</b></td></tr>" for name, meaning, grant in rows)
    return ("<table style='font-size: 90%; border-spacing: 12px 0'><tr><th align=left>import</th>"
            "<th align=left>gives</th><th align=left>this run</th></tr>" + body + "</table>")


def size_text(size: int | None) -> str:
    """``67108864`` -> ``'64MiB'``; other sizes stay in bytes; None -> ``''``."""
    if not size:
        return ""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (widgets can render), False in a terminal or plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _limit_field(description: str, value: str, placeholder: str = "") -> w.Text:
    """A text field for one limit, sent on Enter or when it loses focus."""
    return w.Text(value=value, description=description, placeholder=placeholder,
                  continuous_update=False, style={"description_width": "initial"},
                  layout=w.Layout(width="230px"))


def _small_button(icon: str, tooltip: str) -> w.Button:
    return w.Button(icon=icon, tooltip=tooltip, layout=w.Layout(width="32px"))


@dataclass
class DirRow:
    """One directory grant in the panel: on/off, host -> guest, read-only or read-write."""

    base: DirGrant
    enabled: w.Checkbox
    mode: w.ToggleButtons
    remove: w.Button
    box: w.HBox

    @classmethod
    def create(cls, grant: DirGrant) -> "DirRow":
        """Widgets for ``grant``, ticked."""
        enabled = w.Checkbox(value=True, indent=False, layout=w.Layout(width="auto"),
                             description=f"{grant.host} → {grant.guest}")
        enabled.add_class("wasi-dir-toggle")
        mode = w.ToggleButtons(options=[("read-write", "rw"), ("read-only", "ro")],
                               value="ro" if grant.read_only else "rw",
                               style=w.ToggleButtonsStyle(button_width="90px"))
        mode.add_class("wasi-dir-mode")
        remove = _small_button("times", "remove this grant")
        return cls(grant, enabled, mode, remove, w.HBox([enabled, mode, remove]))

    @property
    def host(self) -> Path:
        """The granted host folder."""
        return self.base.host

    @property
    def guest(self) -> str:
        """The path the guest sees it as."""
        return self.base.guest

    @property
    def grant(self) -> DirGrant:
        """The grant as it is set now (the mode buttons may have changed it)."""
        return replace(self.base, read_only=self.mode.value == "ro")


@dataclass
class EnvRow:
    """One environment variable in the panel: on/off and an editable value."""

    name: str
    enabled: w.Checkbox
    value: w.Text
    remove: w.Button
    box: w.HBox

    @classmethod
    def create(cls, name: str, value: str) -> "EnvRow":
        """Widgets for ``NAME=value``, ticked. The value is sent on Enter or when it loses focus."""
        enabled = w.Checkbox(value=True, indent=False, description=name,
                             layout=w.Layout(width="auto"))
        enabled.add_class("wasi-env-toggle")
        text = w.Text(value=value, continuous_update=False, placeholder="value",
                      layout=w.Layout(width="260px"))
        text.add_class("wasi-env-value")
        remove = _small_button("times", "remove this variable")
        return cls(name, enabled, text, remove, w.HBox([enabled, w.Label("="), text, remove]))

    @property
    def pair(self) -> tuple[str, str]:
        """``(name, value)`` as it is set now."""
        return self.name, self.value.value


class CapabilityPanel(w.VBox):
    """Widgets for a built component's capabilities; every change re-runs it into :attr:`output`.

    ``artifact`` is a built component (see :func:`wasi_magic.build`), ``caps``
    what it starts with. ``limits`` (or just ``timeout``) are the run's limits.
    ``prepare`` is applied to the capabilities just before each run and is not
    shown (quick mode uses it to pass the cell's source). Relative host paths
    typed into the panel are resolved against ``cwd`` (default: the current
    working directory).
    """

    def __init__(self, artifact: Artifact, caps: Capabilities | None = None,
                 sandbox: Sandbox | None = None, timeout: float | None = DEFAULT_TIMEOUT, *,
                 limits: Limits | None = None, prepare: Prepare | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> None:
        caps = caps if caps is not None else Capabilities()
        self.artifact = artifact
        self.sandbox = sandbox if sandbox is not None else default_sandbox()
        self.limits = limits if limits is not None else Limits(timeout=timeout or None)
        self.prepare = prepare
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.stdin_file = caps.stdin_file
        self.last_result: RunResult | None = None
        #: The command line and the panel's message as plain text (the widgets hold HTML).
        self.command_text = ""
        self.message_text = ""
        self.runs = 0
        #: What the component imports, as Wasmtime reads it (in the sandbox worker).
        self.imports = self.sandbox.imports(artifact)
        self.dir_rows: list[DirRow] = []
        self.env_rows: list[EnvRow] = []
        self._build_widgets(caps)
        super().__init__(children=self._layout())
        self.add_class("wasi-panel")
        for grant in caps.dirs:
            self._add_dir_row(grant)
        for name, value in caps.env:
            self._add_env_row(name, value)
        self._watch(self.args, self.stdin, self.timeout, self.fuel, self.max_memory, self.http)
        self.run_button.on_click(lambda _: self.run())
        self.add_dir_button.on_click(lambda _: self.add_dir())
        self.add_env_button.on_click(lambda _: self.add_env())
        self.refresh()

    # --- construction -------------------------------------------------------------------

    def _build_widgets(self, caps: Capabilities) -> None:
        self.dir_box = w.VBox()
        self.new_dir_host = w.Text(placeholder="host folder, e.g. data",
                                   layout=w.Layout(width="200px"))
        self.new_dir_guest = w.Text(placeholder="guest path, e.g. /data",
                                    layout=w.Layout(width="160px"))
        self.new_dir_ro = w.Checkbox(value=False, description="read-only", indent=False,
                                     layout=w.Layout(width="auto"))
        self.add_dir_button = w.Button(description="Add directory", icon="plus")
        self.add_dir_button.add_class("wasi-add-dir")
        self.env_box = w.VBox()
        self.new_env_name = w.Text(placeholder="NAME", layout=w.Layout(width="140px"))
        self.new_env_value = w.Text(placeholder="value", layout=w.Layout(width="200px"))
        self.add_env_button = w.Button(description="Add variable", icon="plus")
        self.add_env_button.add_class("wasi-add-env")
        self.args = w.Text(value=shlex.join(caps.args), continuous_update=False,
                           placeholder="program arguments (after --)",
                           layout=w.Layout(width="300px"))
        self.args.add_class("wasi-args")
        empty = (f"empty: stdin is the file {caps.stdin_file}" if caps.stdin_file is not None
                 else "text fed to stdin (empty: no input)")
        self.stdin = w.Textarea(value=caps.stdin.decode(errors="replace") if caps.stdin else "",
                                continuous_update=False, placeholder=empty,
                                layout=w.Layout(width="300px", height="32px"))
        self.stdin.add_class("wasi-stdin")
        self._build_limit_widgets()
        self.network = w.Checkbox(value=False, disabled=True, indent=False,
                                  description="network (sockets)", layout=w.Layout(width="auto"))
        self.network.add_class("wasi-network")
        self.network_note = w.HTML(f"<small>{html.escape(NETWORK_NOTE)}</small>")
        self.http = w.Text(value=" ".join(str(origin) for origin in caps.http),
                           continuous_update=False, layout=w.Layout(width="360px"),
                           placeholder="allowed HTTP origins, e.g. http://127.0.0.1:8000")
        self.http.add_class("wasi-http")
        self.command = w.HTML()
        self.command.add_class("wasi-command")
        self.imports_table = w.HTML()
        self.imports_table.add_class("wasi-imports")
        self.message = w.HTML()
        self.message.add_class("wasi-message")
        self.status = w.HTML()
        self.status.add_class("wasi-status")
        self.run_button = w.Button(description="Run", icon="play", button_style="primary")
        self.run_button.add_class("wasi-run")
        self.output = w.Output(layout=w.Layout(border="1px solid #ddd", padding="4px"))
        self.output.add_class("wasi-output")

    def _build_limit_widgets(self) -> None:
        limits = self.limits
        self.timeout = _limit_field("timeout (s, 0: none)",
                                    f"{limits.timeout:g}" if limits.timeout else "0")
        self.fuel = _limit_field("fuel", str(limits.fuel or ""), "no limit")
        self.max_memory = _limit_field("max memory", size_text(limits.max_memory),
                                       "no limit, e.g. 64MiB")
        self.limits_note = w.HTML("")

    def _layout(self) -> list[w.Widget]:
        # Compact enough that a change and the output it causes fit together on a
        # 1366x768 screen: one line per group where it fits, the imports table folded.
        def label(text: str) -> w.HTML:
            return w.HTML(f"<b>{html.escape(text)}</b>", layout=w.Layout(width="110px"))
        return [
            w.HBox([w.HTML(f"<b>Capabilities of {html.escape(self.artifact.name)}</b> "
                           f"<small>(every change re-runs the built component)</small>"),
                    self.run_button, self.status],
                   layout=w.Layout(align_items="center", justify_content="space-between")),
            w.HBox([label("Directories"), self.dir_box]),
            w.HBox([label(""), self.new_dir_host, w.Label("→"), self.new_dir_guest,
                    self.new_dir_ro, self.add_dir_button]),
            w.HBox([label("Variables"), self.env_box]),
            w.HBox([label(""), self.new_env_name, w.Label("="), self.new_env_value,
                    self.add_env_button]),
            w.HBox([label("Input"), self.args, self.stdin]),
            w.HBox([label("Limits"), self.timeout, self.fuel, self.max_memory]),
            self.limits_note,
            w.HBox([label("Network"), self.network, self.network_note],
                   layout=w.Layout(align_items="center")),
            w.HBox([label("HTTP"), self.http,
                    w.HTML("<small>--allow-http origins, space-separated (for cells that "
                           "import wasi_magic_http)</small>")],
                   layout=w.Layout(align_items="center")),
            w.HBox([label("Command"), self.command]),
            self.imports_table,
            self.message,
            self.output,
        ]

    def _watch(self, *widgets: w.Widget) -> None:
        for widget in widgets:
            widget.observe(self._changed, names="value")

    def _changed(self, change: Any = None) -> None:
        self.run()

    # --- rows -----------------------------------------------------------------------------

    def _add_dir_row(self, grant: DirGrant) -> DirRow:
        row = DirRow.create(grant)
        self.dir_rows.append(row)
        self.dir_box.children = tuple(r.box for r in self.dir_rows)
        self._watch(row.enabled, row.mode)
        row.remove.on_click(lambda _: self._remove_dir_row(row))
        return row

    def _remove_dir_row(self, row: DirRow) -> None:
        self.dir_rows.remove(row)
        self.dir_box.children = tuple(r.box for r in self.dir_rows)
        self.run()

    def _add_env_row(self, name: str, value: str) -> EnvRow:
        row = EnvRow.create(name, value)
        self.env_rows.append(row)
        self.env_box.children = tuple(r.box for r in self.env_rows)
        self._watch(row.enabled, row.value)
        row.remove.on_click(lambda _: self._remove_env_row(row))
        return row

    def _remove_env_row(self, row: EnvRow) -> None:
        self.env_rows.remove(row)
        self.env_box.children = tuple(r.box for r in self.env_rows)
        self.run()

    def add_dir(self, host: str | None = None, guest: str | None = None,
                read_only: bool | None = None) -> RunResult | None:
        """Add a directory grant (default: from the 'add' fields), then re-run.

        An invalid grant (a missing folder, a guest path granted twice) is
        reported in the panel and not added.
        """
        host = self.new_dir_host.value.strip() if host is None else host
        guest = (self.new_dir_guest.value.strip() if guest is None else guest) or host
        read_only = self.new_dir_ro.value if read_only is None else read_only
        try:
            if not host:
                raise WasiMagicError("Type a host folder first (relative to "
                                     f"{str(self.cwd)!r}), then press Add directory.")
            grant = DirGrant.make(host, guest, read_only, self.cwd)
            if any(row.guest == grant.guest for row in self.dir_rows):
                raise WasiMagicError(f"The guest path {grant.guest!r} is already in the list: "
                                     f"tick or untick that row instead.")
        except WasiMagicError as exc:
            self._show_message(str(exc), "error")
            return None
        self._add_dir_row(grant)
        self.new_dir_host.value = self.new_dir_guest.value = ""
        return self.run()

    def add_env(self, name: str | None = None, value: str | None = None) -> RunResult | None:
        """Add an environment variable (default: from the 'add' fields), then re-run."""
        name = self.new_env_name.value.strip() if name is None else name
        value = self.new_env_value.value if value is None else value
        try:
            check_variable(name, value)
            if any(row.name == name for row in self.env_rows):
                raise WasiMagicError(f"{name} is already in the list: edit its value instead.")
        except WasiMagicError as exc:
            self._show_message(str(exc), "error")
            return None
        self._add_env_row(name, value)
        self.new_env_name.value = self.new_env_value.value = ""
        return self.run()

    # --- state ----------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """The capabilities the widgets describe now. Raises :class:`WasiMagicError` if invalid."""
        try:
            args = shlex.split(self.args.value)
        except ValueError as exc:
            raise WasiMagicError(f"arguments: {exc} (check the quotes).") from None
        return Capabilities.of(
            dirs=[row.grant for row in self.dir_rows if row.enabled.value],
            env=[row.pair for row in self.env_rows if row.enabled.value],
            args=args,
            stdin=self.stdin.value.encode() if self.stdin.value else None,
            stdin_file=self.stdin_file if not self.stdin.value else None,
            http=self.http.value.split())

    def current_limits(self) -> Limits:
        """The limits the widgets describe now. Raises :class:`WasiMagicError` if invalid."""
        timeout = parse_duration(self.timeout.value.strip() or "0", "timeout")
        fuel = parse_count(self.fuel.value, "fuel") if self.fuel.value.strip() else None
        memory = (parse_size(self.max_memory.value, "max memory")
                  if self.max_memory.value.strip() else None)
        return Limits(timeout=timeout or None, fuel=fuel, max_memory=memory,
                      max_output=self.limits.max_output)

    def state(self) -> tuple[Capabilities, Limits] | None:
        """``(capabilities, limits)`` now, or None after showing why the input is invalid."""
        try:
            return self.capabilities(), self.current_limits()
        except WasiMagicError as exc:
            self._show_message(f"Not run: {exc}", "error")
            return None

    def summary(self) -> str:
        """A plain-text description: grants, what is off, limits, network, command line."""
        lines = [f"wasi capability panel for {self.artifact.name}"]
        try:
            caps, limits = self.capabilities(), self.current_limits()
        except WasiMagicError as exc:
            return "\n".join(lines + [f"  invalid: {exc}"])
        lines += ["granted:"] + [f"  {line}" for line in caps.describe()]
        off = ([f"  dir  {row.host} -> {row.guest}"
                for row in self.dir_rows if not row.enabled.value]
               + [f"  env  {row.name}={row.value.value}"
                  for row in self.env_rows if not row.enabled.value])
        if off:
            lines += ["not granted (unticked):"] + off
        limit_words = " ".join(limits.wasmtime_options()[1::2]) or "none"
        lines += [f"limits: {limit_words}",
                  "network: sockets not granted (they cannot be from wasmtime-py); HTTP only "
                  "to the origins listed under granted",
                  "command: " + command_line(caps, limits, self.artifact.name)]
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget view plus a ``text/plain`` summary for places widgets cannot render."""
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = self.summary()
        return bundle

    # --- showing state --------------------------------------------------------------------

    def refresh(self) -> tuple[Capabilities, Limits] | None:
        """Update the command line and the imports table; return the state (None if invalid)."""
        current = self.state()
        if current is None:
            return None
        caps, limits = current
        self.message.value = self.message_text = ""
        self.command_text = command_line(caps, limits, self.artifact.name)
        self.command.value = (f"<pre style='white-space: pre-wrap; margin: 0'>"
                              f"{html.escape(self.command_text)}</pre>")
        self.imports_table.value = self._imports_html(caps)
        return current

    def _imports_html(self, caps: Capabilities) -> str:
        key = [name for name in self.imports if name.startswith(KEY_IMPORTS)]
        rest = [name for name in self.imports if name not in key]
        more = (f"<details><summary>{len(rest)} more imports, always provided</summary>"
                f"{_html_table(import_rows(rest, caps))}</details>") if rest else ""
        return (f"<details><summary><b>What {html.escape(self.artifact.name)} imports, and "
                f"what this run grants</b> <small>({len(self.imports)} imports)</small>"
                f"</summary>{_html_table(import_rows(key, caps))}{more}</details>")

    def _show_message(self, text: str, kind: str = "info") -> None:
        color = "#b00020" if kind == "error" else "#555"
        self.message_text = text
        self.message.value = (f"<div style='color: {color}; white-space: pre-wrap'>"
                              f"{html.escape(text)}</div>")

    # --- running --------------------------------------------------------------------------

    def run(self) -> RunResult | None:
        """Run the built component with the panel's capabilities; replace the output below.

        Returns the result, or None when the input is invalid or Wasmtime
        refused (the panel says why). Never raises for a guest or input error.
        """
        current = self.refresh()
        if current is None:
            self._clear_output()
            return None
        caps, limits = current
        self.status.value = "<small>running…</small>"
        stream = OutputStream(self.output)
        try:
            result = self._run_guest(caps, limits, stream.writer("stdout"), stream.writer("stderr"))
        except KeyboardInterrupt as exc:
            self._show_message(f"Interrupted: {exc or 'the guest was stopped'}", "error")
            self.status.value = ""
            return None
        except Exception as exc:  # noqa: BLE001 - the panel reports, never shows a traceback
            text = str(exc) if isinstance(exc, WasiMagicError) else f"{type(exc).__name__}: {exc}"
            self._show_message(f"Not run: {text}", "error")
            self.status.value = ""
            return None
        finally:
            stream.close()
        self.runs += 1
        self.last_result = result
        self.status.value = f"<small>{html.escape(run_summary(result))}</small>"
        return result

    def _run_guest(self, caps: Capabilities, limits: Limits, out: TextCallback,
                   err: TextCallback) -> RunResult:
        run_caps = self.prepare(caps) if self.prepare is not None else caps
        result = self.sandbox.run(self.artifact, run_caps, limits=limits, stdout=out, stderr=err)
        result.capabilities = caps
        ending = exit_line(result)
        if ending:
            err(ending + "\n")
        return result

    def _clear_output(self) -> None:
        self.output.outputs = ()


def exit_line(result: RunResult) -> str:
    """The line the magic prints after a failed run ('' for success)."""
    if result.trap:
        return result.trap
    if result.status:
        note = f" ({result.limit_note})" if result.limit_note else ""
        return f"[exit status {result.status}]{note}"
    return ""


def run_summary(result: RunResult) -> str:
    """``'exit status 0 · ran in 4.2 ms'`` and the like."""
    text = f"exit status {result.status} · ran in {result.run_seconds * 1000:.1f} ms"
    if result.fuel_used is not None:
        text += f" · {result.fuel_used:,} fuel"
    return text + (" · output truncated" if result.truncated else "")


class OutputStream:
    """Feeds one run's output into an Output widget by setting its ``outputs`` from the kernel.

    The widget is cleared when the stream starts. Text arrives on Wasmtime's
    I/O thread; consecutive chunks of a stream are merged and published at
    most every ``interval`` seconds while the guest runs (a timer publishes
    text that would otherwise wait for the next chunk; the interval grows with
    the amount of text, so a chatty guest does not resend megabytes many
    times), and once more when it ends.

    Setting ``outputs`` from the kernel is what renders reliably in JupyterLab:
    capturing with ``with output:`` lost text that arrived after the frontend
    had synced the widget's first output back to a busy kernel.
    """

    def __init__(self, output: w.Output, interval: float = 0.1) -> None:
        self.output = output
        self.interval = interval
        self._parts: list[list[str]] = []
        self._size = 0
        self._lock = threading.Lock()
        self._published = time.monotonic()
        self._timer: threading.Timer | None = None
        self._closed = False
        self.output.outputs = ()

    def writer(self, name: str) -> TextCallback:
        """A callback for one stream ('stdout' or 'stderr')."""
        def write(text: str) -> None:
            with self._lock:
                if self._parts and self._parts[-1][0] == name:
                    self._parts[-1][1] += text
                else:
                    self._parts.append([name, text])
                self._size += len(text)
                due = self._published + max(self.interval, self._size / 200_000)
                if time.monotonic() >= due:
                    self._publish()
                elif self._timer is None:
                    self._timer = threading.Timer(due - time.monotonic(), self._publish_later)
                    self._timer.daemon = True
                    self._timer.start()
        return write

    def close(self) -> None:
        """Publish everything received; stop the timer."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._publish()
            self._closed = True

    def _publish_later(self) -> None:
        with self._lock:
            if not self._closed:
                self._publish()

    def _publish(self) -> None:
        self._timer = None
        self.output.outputs = tuple({"output_type": "stream", "name": name, "text": text}
                                    for name, text in self._parts)
        self._published = time.monotonic()


def output_text(output: w.Output, name: str | None = None) -> str:
    """The text of an Output widget's stream outputs (of stream ``name``, or all)."""
    return "".join(item.get("text", "") for item in output.outputs
                   if item.get("output_type") == "stream" and name in (None, item.get("name")))


def show_panel(artifact: Artifact, caps: Capabilities | None = None, *,
               sandbox: Sandbox | None = None, limits: Limits | None = None,
               prepare: Prepare | None = None) -> CapabilityPanel | RunResult | None:
    """Show a panel for ``artifact`` and run it once into the panel's output.

    In a Jupyter kernel: display the panel (with its text fallback) and return
    it. Elsewhere (terminal IPython, plain Python): print the text summary,
    run once with output to this process's stdout/stderr, and return the result.
    """
    panel = CapabilityPanel(artifact, caps, sandbox, limits=limits, prepare=prepare)
    if not _in_kernel():
        print(panel.summary())
        print("(the panel's widgets need Jupyter: running once with these capabilities)")
        sys.stdout.flush()
        return _run_in_terminal(panel)
    from IPython.display import display
    display(panel)
    panel.run()
    return panel


def _run_in_terminal(panel: CapabilityPanel) -> RunResult | None:
    current = panel.state()
    if current is None:
        print(panel.message_text, file=sys.stderr)
        return None
    caps, limits = current
    try:
        return panel._run_guest(caps, limits, _flushing(sys.stdout), _flushing(sys.stderr))
    except WasiMagicError as exc:
        print(f"Not run: {exc}", file=sys.stderr)
        return None


def _flushing(stream: Any) -> TextCallback:
    """A writer that passes text to ``stream`` and flushes it (terminal output)."""
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()
    return write


__all__ = ["CapabilityPanel", "DirRow", "EnvRow", "KEY_IMPORTS", "NETWORK_NOTE", "OutputStream",
           "command_line", "component_imports", "exit_line", "grant_for", "import_rows",
           "output_text", "run_summary", "show_panel", "size_text"]
