"""A hostile guest for the sandbox battery: argv[1] names the attack.

Each attack prints ``DENIED: <what the guest saw>`` when the sandbox refuses
it and ``ESCAPED: <what it got>`` when it succeeds. Attacks on limits (loops,
memory, output) simply never end by themselves.
"""
import os
import sys


def attempt(action):
    try:
        got = action()
    except Exception as exc:
        print(f"DENIED: {type(exc).__name__}: {exc}")
    else:
        print(f"ESCAPED: {str(got)[:200]!r}")


def read(path):
    return lambda: open(path, "rb").read()


def write(path, mode="w"):
    def action():
        with open(path, mode) as handle:
            handle.write("pwned")
        return path
    return action


def symlink_then_read(target, link):
    def action():
        os.symlink(target, link)
        return open(link).read()
    return action


def subprocess_run():
    import subprocess
    return subprocess.run(["/bin/sh", "-c", "echo pwned > /tmp/pwned"], capture_output=True)


def start_thread():
    import threading
    thread = threading.Thread(target=print, args=("thread ran",))
    thread.start()
    thread.join()
    return "thread"


def connect():
    import socket
    sock = socket.create_connection(("127.0.0.1", 22), timeout=1)
    return sock


def listen():
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock.getsockname()


def chmod_read_only():
    before = os.stat("/data/input.txt").st_mode
    os.chmod("/data/input.txt", 0o777)
    after = os.stat("/data/input.txt").st_mode
    if after == before:
        raise RuntimeError(f"chmod had no effect (WASI has no permission bits): {oct(after)}")
    return oct(after)


def env_secret():
    return os.environ["HOST_SECRET"]


def env_change():
    os.environ["PATH"] = "/pwned"
    os.putenv("HOST_SECRET", "pwned")
    raise PermissionError(f"changed only the guest's copy; guest sees {sorted(os.environ)}")


def memory_bomb():
    hoard = []
    while True:
        hoard.append(bytearray(16 << 20))


def loop_forever():
    while True:
        pass


def deep_recursion():
    def down(n):
        return down(n + 1) + 1
    return down(0)


def nested_repr():
    # Recursion inside C code (repr of a deeply nested list).
    value = []
    for _ in range(200_000):
        value = [value]
    return repr(value)


def flood():
    line = "flood " * 100
    while True:
        print(line)


def sleep_forever():
    import time
    time.sleep(3600)


def kill_host():
    import signal
    os.kill(1, signal.SIGKILL)
    return "sent"


ATTACKS = {
    "abs-etc-passwd": read("/etc/passwd"),
    "abs-canary": read("/secret.txt"),
    "abs-proc-environ": read("/proc/self/environ"),
    "abs-dev-mem": read("/dev/mem"),
    "list-root": lambda: os.listdir("/"),
    "dotdot": read("/data/../secret.txt"),
    "dotdot-deep": read("/data/sub/../../secret.txt"),
    "dotdot-etc": read("/data/../../../../etc/passwd"),
    "relative-dotdot": read("../secret.txt"),
    "chdir-escape": lambda: (os.chdir("/data/.."), open("secret.txt").read()),
    "host-symlink-file": read("/data/link-to-secret"),
    "host-symlink-dir": read("/data/link-to-outside/secret.txt"),
    "guest-symlink": symlink_then_read("../secret.txt", "/rw/evil-link"),
    "guest-symlink-abs": symlink_then_read("/etc/passwd", "/rw/evil-abs"),
    "hardlink-out": lambda: os.link("/rw/../secret.txt", "/rw/hard"),
    "rw-write-outside": write("/rw/../escaped.txt"),
    "ro-write": write("/data/input.txt"),
    "ro-create": write("/data/new.txt"),
    "ro-append": write("/data/input.txt", "a"),
    "ro-truncate": lambda: os.truncate("/data/input.txt", 0),
    "ro-rename": lambda: os.rename("/data/input.txt", "/data/moved.txt"),
    "ro-unlink": lambda: os.unlink("/data/input.txt"),
    "ro-mkdir": lambda: os.mkdir("/data/newdir"),
    "ro-rmdir": lambda: os.rmdir("/data/sub"),
    "ro-chmod": chmod_read_only,
    "ro-utime": lambda: os.utime("/data/input.txt", (0, 0)),
    "env-secret": env_secret,
    "env-change": env_change,
    "socket-connect": connect,
    "socket-listen": listen,
    "thread": start_thread,
    "subprocess": subprocess_run,
    "fork": os.fork if hasattr(os, "fork") else (lambda: (_ for _ in ()).throw(OSError("no fork"))),
    "kill-host": kill_host,
    "long-path": read("/data/" + "a" * 100_000),
    "nul-path": read("/data/input.txt\0/etc/passwd"),
    "non-utf8-name": lambda: open(b"/rw/\xff\xfe-name", "w").write("x"),
    "memory-bomb": memory_bomb,
    "infinite-loop": loop_forever,
    "deep-recursion": deep_recursion,
    "nested-repr": nested_repr,
    "output-flood": flood,
    "sleep-forever": sleep_forever,
    "abort": os.abort,
    "burn-fuel": loop_forever,
}


if __name__ == "__main__":
    name = sys.argv[1]
    if name == "huge-args":
        print(f"DENIED: nothing to deny; got {len(sys.argv)} args, {len(os.environ)} vars, "
              f"{sum(map(len, sys.argv))} argv bytes")
    else:
        attempt(ATTACKS[name])
