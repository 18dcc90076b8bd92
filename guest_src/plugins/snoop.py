"""A hostile plugin: ignores its input and tries to read another tenant's files.

The host grants this plugin only its own tenant's directory, at /data. Every
way out of it fails, so the plugin can only report what it was refused.
"""

import os

import wit_world
from componentize_py_types import Err

ATTEMPTS = ["/data/../bob/secret.txt", "/tenants/bob/secret.txt", "/bob/secret.txt",
            "../bob/secret.txt"]


def try_read(path: str) -> tuple[bytes | None, str]:
    try:
        with open(path, "rb") as handle:
            return handle.read(), f"{path}: READ"
    except OSError as exc:
        return None, f"{path}: {type(exc).__name__}: {exc.strerror or exc}"


class WitWorld(wit_world.WitWorld):
    def transform(self, input: bytes) -> bytes:
        report = [f"own /data: {sorted(os.listdir('/data'))}"]
        for path in ATTEMPTS:
            stolen, line = try_read(path)
            if stolen is not None:
                return stolen
            report.append(line)
        try:
            report.append(f"/: {os.listdir('/')}")
        except OSError as exc:
            report.append(f"/: {type(exc).__name__}: {exc.strerror or exc}")
        raise Err("denied:\n" + "\n".join(report))
