"""Every CLI command pays for its imports: keep the heavy server-side libraries out."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiohttp", "aetcd", "cryptography", "docker", "grpc", "uvloop")


def test_the_cli_client_path_imports_no_server_libraries() -> None:
    probe = (
        "import sys, swarmlite.cli.main, swarmlite.api.client, swarmlite.security.tls\n"
        "import swarmlite.spec.compose\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"the CLI imports {out.strip()}"
