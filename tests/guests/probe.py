"""A test guest: performs the operation named by argv[1] on the paths that follow.

It prints what happened, including the exception a refused operation raises,
so tests can check what the sandbox allowed and what it refused.
"""
import os
import sys


def attempt(label, action):
    try:
        value = action()
    except Exception as exc:  # the refusal is the interesting output
        print(f"{label}: {type(exc).__name__}: {exc}")
        return False
    print(f"{label}: ok" + ("" if value is None else f" {value}"))
    return True


def write(path, mode):
    with open(path, mode) as handle:
        handle.write("guest was here\n")


OPS = {
    "read": lambda p: attempt("read", lambda: open(p).read().strip()),
    "write": lambda p: attempt("write", lambda: write(p, "w")),
    "append": lambda p: attempt("append", lambda: write(p, "a")),
    "truncate": lambda p: attempt("truncate", lambda: os.truncate(p, 0)),
    "unlink": lambda p: attempt("unlink", lambda: os.unlink(p)),
    "mkdir": lambda p: attempt("mkdir", lambda: os.mkdir(p)),
    "rmdir": lambda p: attempt("rmdir", lambda: os.rmdir(p)),
    "listdir": lambda p: attempt("listdir", lambda: sorted(os.listdir(p))),
}


def main(argv):
    op = argv[1] if len(argv) > 1 else "hello"
    if op == "hello":
        print("hello from the probe", argv[1:])
    elif op == "env":
        print("env:", sorted(os.environ.items()))
    elif op == "setenv":
        os.environ["PROBE_SET"] = "1"
        print("setenv: ok", os.environ["PROBE_SET"])
    elif op == "args":
        print("argv:", argv)
    elif op == "stdin":
        print("stdin:", repr(sys.stdin.read()))
    elif op == "stderr":
        print("to stdout")
        print("to stderr", file=sys.stderr)
    elif op == "badutf8":
        sys.stdout.buffer.write(b"bad \xff\xfe bytes\n")
        sys.stdout.flush()
    elif op == "exit":
        sys.exit(int(argv[2]))
    elif op == "raise":
        raise ValueError("the probe raised on purpose")
    elif op == "rename":
        attempt("rename", lambda: os.rename(argv[2], argv[3]))
    elif op in OPS:
        for path in argv[2:]:
            OPS[op](path)
    else:
        print("unknown op", op)


main(sys.argv)
