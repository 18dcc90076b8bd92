"""The battery, second part: attacks on the host's side of a grant, through a real kernel.

A guest cannot leave its grants, so a hostile student attacks what the *host*
does next: plants a symbolic link in a read-write grant for a later grant,
``--stdin`` or ``-o`` to follow; nests grants of different modes; grants the
folders the host runs code from; smuggles flags through ``{var}`` expansion;
gives limits the host cannot represent. Each case checks the refusal (one line,
no traceback from inside wasi_magic), that the host is unchanged (checksums of
the canary tree) and that the kernel still runs cells.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kernels import errors, execute, kernel_in, streams
from test_battery import digest_tree, make_tree


@pytest.fixture(scope="module")
def kernel(shared_cache: Path, quick_ready, tmp_path_factory):
    with kernel_in(tmp_path_factory.mktemp("hardening-kernel"), shared_cache) as (_, client):
        yield client


def refused(client, cell: str, *words: str) -> str:
    """Run ``cell``; it must be refused with one line holding ``words``; return that line."""
    messages = execute(client, cell)
    err = streams(messages, "stderr")
    shown = errors(messages)
    text = err + "".join(e["evalue"] for e in shown)
    assert "Traceback" not in err and not any(
        "wasi_magic" in line for e in shown for line in e["traceback"]), messages
    for word in words:
        assert word in text, f"expected {word!r} in {text!r}"
    assert not streams(messages, "stdout"), messages  # nothing ran
    return text


def alive(client) -> None:
    assert streams(execute(client, "print(6 * 7)"), "stdout") == "42\n"
    after = execute(client, "%%wasi -q --quick\nprint('the next cell runs')\n")
    assert streams(after, "stdout") == "the next cell runs\n", after


def plant(client, tmp_path: Path, target: str, link: str) -> None:
    """A guest with a read-write grant makes ``rw/<link>`` a symbolic link to ``target``."""
    messages = execute(client, f"%%wasi -q --quick --dir {tmp_path / 'rw'}::/w\n"
                               f"import os\nos.symlink({target!r}, '/w/{link}')\nprint('planted')\n")
    assert streams(messages, "stdout") == "planted\n", messages
    assert os.path.islink(tmp_path / "rw" / link)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    make_tree(tmp_path)
    return tmp_path


def test_a_planted_link_to_the_root_is_never_granted(kernel, tree: Path) -> None:
    before = digest_tree(tree)
    plant(kernel, tree, "../" * 40, "data")
    line = refused(kernel, f"%%wasi -q --quick --dir {tree / 'rw' / 'data'}::/data\n"
                           f"open('/data/etc/passwd').read()\n",
                   "is a symbolic link to '/'", "does not follow links")
    assert "--dir /" in line  # how to grant the target on purpose
    assert digest_tree(tree) == before
    alive(kernel)


@pytest.mark.parametrize("target", ["../" * 40, "../secret.txt", "../" * 40 + "proc/kmsg"])
def test_a_planted_link_in_a_path_folder_is_never_copied_into_a_build(kernel, tree: Path,
                                                                       target: str) -> None:
    """A --path folder is copied for the build and read by the guest while it is
    pre-initialized: a planted link there handed the guest any file the kernel could read
    (``root -> /`` copied the whole disk; ``/proc/kmsg`` hung the build for good)."""
    (tree / "rw" / "mine.py").write_text("VALUE = 7\n")
    before = digest_tree(tree)
    plant(kernel, tree, target, "planted")
    line = refused(kernel, f"%%wasi -q --path {tree / 'rw'}\nimport mine\nprint(mine.VALUE)\n",
                   f"'planted' is a symbolic link to {target!r}",
                   "does not follow links in the folders a build carries")
    assert "Traceback" not in line
    os.remove(tree / "rw" / "planted")  # (the planted link is the only change to the tree)
    assert digest_tree(tree) == before
    ran = execute(kernel, f"%%wasi -q --path {tree / 'rw'}\nimport mine\nprint(mine.VALUE)\n")
    assert streams(ran, "stdout") == "7\n", ran  # the folder itself builds as before
    alive(kernel)


def test_a_fifo_in_a_path_folder_is_refused_not_waited_on(kernel, tree: Path) -> None:
    os.mkfifo(tree / "rw" / "pipe")  # (nobody ever writes to it)
    refused(kernel, f"%%wasi -q --path {tree / 'rw'}\nprint('ran')\n",
            "'pipe' is not a regular file or folder")
    alive(kernel)


@pytest.mark.parametrize("folder, why", [
    ("key_path().parent", "the key that seals the cache"),    # the folder itself
    ("key_path().parent.parent", "the key that seals the cache"),  # a folder that holds it
    ("key_path().parent / 'inner'", "the key that seals the cache"),  # a folder inside it
    ("jupyter_runtime_dir()", "the keys of running kernels"),
])
def test_a_path_folder_never_carries_the_hosts_secrets(kernel, folder: str, why: str) -> None:
    """A build copies each ``--path`` folder where its guest (and any module there, run
    while the snapshot is taken) reads every file: the cache's sealing key or the
    connection files of running kernels must never be in it."""
    setup = execute(kernel, "from pathlib import Path\n"
                            "from wasi_magic.cache import key_path\n"
                            "from jupyter_core.paths import jupyter_runtime_dir\n"
                            f"SECRET = Path({folder})\n"
                            "MADE = not SECRET.exists()\n"
                            "SECRET.mkdir(parents=True, exist_ok=True)\n"
                            "from wasi_magic.builder import builds_logged\n"
                            "print(builds_logged())\n")
    builds = streams(setup, "stdout")
    assert builds.strip().isdigit(), setup
    refused(kernel, "%%wasi -q --path {SECRET}\nprint('built')\n", "--path", why,
            "holds only the modules")
    assert streams(execute(kernel, "print(builds_logged())"), "stdout") == builds  # nothing built
    execute(kernel, "MADE and SECRET.rmdir()")
    alive(kernel)


def test_a_planted_link_is_not_fed_to_stdin(kernel, tree: Path) -> None:
    before = digest_tree(tree)
    plant(kernel, tree, "../secret.txt", "input.txt")  # WASI lets a guest write relative links
    refused(kernel, f"%%wasi -q --quick --stdin {tree / 'rw' / 'input.txt'}\n"
                    f"import sys\nprint(sys.stdin.read())\n",
            "--stdin", "is a symbolic link to", "secret.txt")
    assert digest_tree(tree) == before
    alive(kernel)


def test_a_planted_link_does_not_redirect_an_output_file(kernel, tree: Path) -> None:
    before = digest_tree(tree)
    plant(kernel, tree, "../secret.txt", "cell.wasm")
    refused(kernel, f"%%wasi -q --p1 -o {tree / 'rw' / 'cell.wasm'}\n(module)\n",
            "-o", "is a symbolic link to", "secret.txt")
    assert digest_tree(tree) == before  # the canary was not overwritten through the link
    alive(kernel)


@pytest.mark.parametrize("target", ["fifo", "/dev/null"])
def test_an_output_file_onto_a_fifo_or_device_is_refused_not_waited_on(
        kernel, tree: Path, target: str) -> None:
    """``-o`` opened a FIFO for writing and waited for a reader: the kernel hung."""
    os.mkfifo(tree / "rw" / "fifo")
    path = tree / "rw" / target if target == "fifo" else Path(target)
    before = digest_tree(tree)
    refused(kernel, f"%%wasi -q --p1 -o {path}\n(module)\n", "-o", "is not a regular file")
    assert digest_tree(tree) == before
    alive(kernel)


@pytest.mark.parametrize("write", ["/x//b/f.txt", "/x/./b/f.txt", "/x/b/f.txt"])
def test_nested_grants_of_different_modes_are_refused(kernel, tree: Path, write: str) -> None:
    (tree / "rw" / "b").mkdir()
    before = digest_tree(tree, skip="")
    refused(kernel, f"%%wasi -q --quick --dir {tree / 'rw'}::/x --dir {tree / 'rw' / 'b'}::/x/b::ro\n"
                    f"open({write!r}, 'w').write('pwned')\n",
            "lies inside", "read-only", "separate guest paths")
    assert digest_tree(tree, skip="") == before
    alive(kernel)


@pytest.mark.parametrize("second", ["/g/", "/g/.", "//g"])
def test_one_guest_path_spelled_twice_is_refused(kernel, tree: Path, second: str) -> None:
    refused(kernel, f"%%wasi -q --quick --dir {tree / 'data'}::/g::ro "
                    f"--dir {tree / 'rw'}::{second}\nprint('ran')\n", "is granted twice")
    alive(kernel)


def test_a_guest_path_with_dotdot_is_refused(kernel, tree: Path) -> None:
    refused(kernel, f"%%wasi -q --quick --dir {tree / 'rw'}::/a/../b\nprint('ran')\n",
            "contains '..'")


@pytest.mark.parametrize("which", ["cache", "cache-parent", "inside-cache", "package", "root",
                                   "environment"])
def test_folders_the_host_runs_code_from_are_never_granted(kernel, shared_cache: Path,
                                                           which: str) -> None:
    import sys
    import wasi_magic
    folder = {"cache": shared_cache, "cache-parent": shared_cache.parent,
              "inside-cache": shared_cache / "builds", "package": Path(wasi_magic.__file__).parent,
              "root": Path("/"), "environment": Path(sys.prefix)}[which]
    (shared_cache / "builds").mkdir(parents=True, exist_ok=True)
    refused(kernel, f"%%wasi -q --quick --dir {folder}::/c\nprint('ran')\n",
            "could change what the host runs", "Grant a subfolder")
    alive(kernel)


def test_a_guest_cannot_write_flags_through_expansion(kernel, tree: Path) -> None:
    # The guest's output lands in a variable; a later line uses the variable.
    execute(kernel, "%%wasi -q --quick --out R\nprint('42 --dir /::/host', end='')\n")
    messages = execute(kernel, "%%wasi -q --quick --env PREV={R} -- $R\nimport os, sys\n"
                               "print(repr(os.environ['PREV']), sys.argv[1:], "
                               "os.path.exists('/host'))\n")
    assert streams(messages, "stdout") == "'42 --dir /::/host' ['42 --dir /::/host'] False\n", \
        messages
    alive(kernel)


#: A name longer than any file system takes (255 bytes a component): the OS refuses to look.
LONG = "n" * 300


@pytest.mark.parametrize("cell", [
    f"%%wasi -q --quick --dir {LONG}::/d\nprint('ran')\n",
    f"%%wasi -q --quick --dir {{tree}}/{LONG}/sub::/d\nprint('ran')\n",
    f"%%wasi -q --quick --stdin {LONG}\nprint('ran')\n",
    f"%%wasi -q --quick --stdin {{tree}}/{LONG}/input.txt\nprint('ran')\n",
    f"%%wasi -q --p1 -o {{tree}}/{LONG}/cell.wasm\n(module)\n",
    f"%%wasi -q --path {{tree}}/{LONG}\nprint('ran')\n",
    f"%%wasi -q --world w --wit {LONG}.wit\nprint('ran')\n",
    f"%wasi run {{tree}}/{LONG}.wasm",
    f"%wasi build {{tree}}/{LONG}.py",
])
def test_names_the_os_will_not_look_up_are_refused_in_one_line(kernel, tree: Path,
                                                                 cell: str) -> None:
    """Each was an OSError traceback from inside wasi_magic (pathlib raises ENAMETOOLONG)."""
    before = digest_tree(tree)
    refused(kernel, cell.format(tree=tree), "UsageError", "File name too long")
    assert digest_tree(tree) == before
    alive(kernel)


@pytest.mark.parametrize("flags,words", [
    ("--fuel inf", "--fuel 'inf'"), ("--fuel 1e400", "--fuel '1e400'"),
    ("-W fuel=inf", "--fuel 'inf'"), ("--fuel 18446744073709551616", "must be between 1"),
    ("--max-memory 0", "--max-memory '0'"), ("--max-output 0", "--max-output '0'"),
    ("--timeout nan", "--timeout 'nan'"), ("--max-memory 1e30", "--max-memory '1e30'"),
])
def test_limits_the_host_cannot_represent_are_refused(kernel, flags: str, words: str) -> None:
    refused(kernel, f"%%wasi -q --quick {flags}\nprint('ran')\n", "UsageError", words)
    alive(kernel)


@pytest.mark.parametrize("which", ["proc", "proc-of-the-kernel", "dev", "sys", "jupyter-data",
                                   "jupyter-config"])
def test_the_hosts_processes_devices_and_jupyter_are_never_granted(kernel, tree: Path,
                                                                   which: str) -> None:
    from jupyter_core.paths import jupyter_config_dir, jupyter_data_dir
    pid = streams(execute(kernel, "import os; print(os.getpid())"), "stdout").strip()
    folder = {"proc": "/proc", "proc-of-the-kernel": f"/proc/{pid}", "dev": "/dev",
              "sys": "/sys", "jupyter-data": jupyter_data_dir(),
              "jupyter-config": jupyter_config_dir()}[which]
    Path(folder).mkdir(parents=True, exist_ok=True)  # the Jupyter folders may not exist yet
    before = digest_tree(tree)
    refused(kernel, f"%%wasi -q --quick --dir {folder}::/h\n"
                    f"open('/h/mem' if {which!r}.startswith('proc') else '/h/x', 'w')\n",
            "could change what the host runs", "Grant a subfolder")
    assert digest_tree(tree) == before
    alive(kernel)


@pytest.mark.parametrize("which", ["fifo", "dev-zero", "folder"])
def test_stdin_that_is_not_a_regular_file_is_refused(kernel, tree: Path, which: str) -> None:
    if which == "fifo":
        source = tree / "rw" / "pipe"
        os.mkfifo(source)  # a guest with a read-write grant can make one too (mkfifo is host-side here)
    else:
        source = Path("/dev/zero") if which == "dev-zero" else tree / "data"
    refused(kernel, f"%%wasi -q --quick --stdin {source}\nimport sys\nprint(len(sys.stdin.read()))\n",
            "--stdin", "is not a regular file")
    alive(kernel)  # the kernel did not wait on the FIFO


@pytest.mark.parametrize("flag,name", [("--out", "__builtins__"), ("--err", "__name__"),
                                       ("--result", "1x"), ("--out", "class"),
                                       ("--out", "a.b")])
def test_results_never_land_in_names_the_kernel_uses(kernel, flag: str, name: str) -> None:
    refused(kernel, f"%%wasi -q --quick {flag} {name}\nprint('overwrite')\n",
            f"argument {flag}", repr(name))
    assert streams(execute(kernel, "print(__name__, type(__builtins__).__name__)"),
                   "stdout") == "__main__ module\n"
    alive(kernel)


@pytest.mark.parametrize("which", ["fifo", "dev-zero-link", "folder"])
def test_wasi_run_and_inspect_take_only_regular_files(kernel, tree: Path, which: str) -> None:
    target = tree / "rw" / "x.wasm"
    if which == "fifo":
        os.mkfifo(target)
    elif which == "dev-zero-link":
        os.symlink("/dev/zero", target)
    else:
        target.mkdir()
    for command in ("run", "inspect"):
        messages = execute(kernel, f"%wasi {command} {target}")
        text = streams(messages, "stderr") + "".join(e["evalue"] for e in errors(messages))
        assert "Traceback" not in streams(messages, "stderr"), messages
        assert "not a regular file" in text or "is a directory" in text or \
            "folder" in text, (command, text)
    alive(kernel)


def test_a_guest_cannot_follow_its_own_planted_link_out(kernel, tree: Path) -> None:
    before = digest_tree(tree)
    plant(kernel, tree, "../secret.txt", "peek")
    messages = execute(kernel, f"%%wasi -q --quick --dir {tree / 'rw'}::/w\n"
                               f"try:\n    print(open('/w/peek').read())\n"
                               f"except OSError as exc:\n    print('DENIED', type(exc).__name__)\n")
    assert streams(messages, "stdout").startswith("DENIED"), messages
    assert "canary" not in streams(messages, "stdout")
    assert digest_tree(tree) == before
    alive(kernel)


@pytest.mark.parametrize("flags,words", [
    ("--timeout -5", "--timeout '-5'"), ("--fuel -1", "--fuel '-1'"),
    ("--max-output 1e3000", "--max-output '1e3000'"), ("-W nonsense=1", "-W 'nonsense=1'"),
    ("--env 'ÄBC=1'", "--env"), ("--max-memory 12parsecs", "--max-memory '12parsecs'"),
])
def test_more_values_the_host_cannot_use_are_refused(kernel, flags: str, words: str) -> None:
    refused(kernel, f"%%wasi -q --quick {flags}\nprint('ran')\n", words)
    alive(kernel)


@pytest.mark.parametrize("module", ["resource", "wasmtime"])
def test_modules_in_the_kernels_folder_never_run_in_the_hosts_own_processes(
        shared_cache: Path, quick_ready, tmp_path: Path, module: str) -> None:
    """A ``resource.py`` (or ``wasmtime.py``) in the notebook's folder, a student's own file
    or one a guest wrote there: the host's own processes started afterwards (the spare
    sandbox worker, which starts as a cell ends; tier-up and background compiles) never
    import it, because none has the current folder on its import path."""
    marker = tmp_path / "escaped"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    before = sorted(os.listdir(tmp_path))
    with kernel_in(tmp_path, shared_cache) as (_, client):
        first = execute(client, "%%wasi -q --quick\nprint('first')\n")
        assert streams(first, "stdout") == "first\n", first
        # The spare worker started as that cell ended; make it the active one and run cells.
        execute(client, "from wasi_magic.sandbox.supervisor import default_sandbox\n"
                        "import os, signal, time\npid = default_sandbox().pid\n"
                        "os.kill(pid, signal.SIGKILL)\n"
                        "while open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] "
                        "!= 'Z':\n    time.sleep(0.01)\n")
        for _ in range(2):
            after = execute(client, "%%wasi -q --quick\nprint('the next cell runs')\n")
            assert streams(after, "stdout") == "the next cell runs\n", after
        assert streams(execute(client, "print(6 * 7)"), "stdout") == "42\n"
    assert not marker.exists(), "a module in the notebook's folder ran in a host process"
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("grant", [".", ".."])
def test_the_kernels_import_folders_are_never_granted_writable(kernel, grant: str) -> None:
    """The notebook's folder is on the kernel's ``sys.path``: a guest that could write
    there (or in a folder holding it) could plant a module the kernel imports next."""
    cwd = Path(streams(execute(kernel, "import os; print(os.getcwd())"), "stdout").strip())
    before = digest_tree(cwd)
    refused(kernel, f"%%wasi -q --quick --dir {grant}::/w\nopen('/w/ipywidgets.py', 'w')\n",
            "a folder Python imports modules from", f"--dir {grant}::/w::ro",
            "--dir data::/data")
    assert digest_tree(cwd) == before
    shown = execute(kernel, f"%%wasi -q --quick --dir {grant}::/w::ro\n"
                            f"import os\nprint(sorted(os.listdir('/w')) == "
                            f"{sorted(os.listdir(cwd / grant))!r})\n")
    assert streams(shown, "stdout") == "True\n", shown  # read-only: granted
    alive(kernel)


#: Text a Python str can hold but WASI cannot carry: a lone surrogate and NUL. Jupyter's
#: wire format cannot carry a lone surrogate, but a student's code can make one and hand it
#: to the magic, through ``{expr}`` in the line or ``run_cell_magic``. Each was an encoding
#: traceback (UnicodeEncodeError, some from inside the sandbox worker) or a misleading message.
_BAD = "\ud800"


_WORD = "on the magic line contains a character that is not valid Unicode text"


@pytest.mark.parametrize("line,body,words", [
    ("-q", f"x = '{_BAD}'\n", "The cell contains a character that is not valid Unicode"),
    ("-q --quick", f"x = '{_BAD}'\n", "The cell contains a character"),
    ("-q --session bad", f"x = '{_BAD}'\n", "The cell contains a character"),
    ("-q --p1", f"(module \"{_BAD}\")\n", "The cell contains a character"),
    ("-q --quick", "print(1)\0\n", "The cell contains a NUL character (at index 8)"),
    (f"-q --quick --env X={_BAD}", "print('ran')\n", f"'X={_BAD}' {_WORD}".encode(
        "ascii", "backslashreplace").decode()),
    ("-q --quick --env X=a\0b", "print('ran')\n", "on the magic line contains a NUL"),
    (f"-q --quick -- {_BAD}", "print('ran')\n", _WORD),
    (f"-q --quick --dir {{tree}}/{_BAD}::/d", "print('ran')\n", _WORD),
    (f"-q --quick --dir {{tree}}::/{_BAD}", "print('ran')\n", _WORD),
    (f"-q --quick --stdin-text {_BAD}", "print('ran')\n", _WORD),
    (f"-q --quick --stdin {{tree}}/{_BAD}", "print('ran')\n", _WORD),
    (f"-q --quick -o {{tree}}/{_BAD}.wasm", "print('ran')\n", _WORD),
    ("-q --quick -o {tree}/a\0.wasm", "print('ran')\n", "on the magic line contains a NUL"),
    (f"-q --path {{tree}}/{_BAD}", "print('ran')\n", _WORD),
])
def test_text_no_guest_can_be_given_is_refused_in_one_line(kernel, tree: Path, line: str,
                                                            body: str, words: str) -> None:
    before = digest_tree(tree)
    line = line.format(tree=tree)
    refused(kernel, f"get_ipython().run_cell_magic('wasi', {line!r}, {body!r})",
            "UsageError", words)
    assert digest_tree(tree) == before
    alive(kernel)


@pytest.mark.parametrize("line", ["%%wasi -q --quick --env X={bad}\nprint('ran')\n",
                                  "%wasi run {tree}/{bad}.wasm", "%wasi inspect {bad}.wasm"])
def test_a_lone_surrogate_through_expansion_is_refused_in_one_line(kernel, tree: Path,
                                                                     line: str) -> None:
    execute(kernel, f"bad = {_BAD!r}")
    refused(kernel, line.replace("{tree}", str(tree)), "UsageError", _WORD)
    alive(kernel)
