"""How peers find the scheduler and its token without the user handling either.

Order of discovery for a client or worker given only an address (DESIGN §3):
1. a scheduler started in this process (a ``LocalCluster``) registered its ``Security``;
2. the default token file ``~/.config/shoal/token`` that ``shoal scheduler`` creates.
A scheduler file (``--scheduler-file``) names the address and where the token lives.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from shoal.comm.security import Security

_IN_PROCESS: dict[str, Security] = {}


def default_token_path() -> Path:
    return Path.home() / ".config" / "shoal" / "token"


def register_local(address: str, security: Security) -> None:
    """Remember the security of a scheduler living in this process."""
    _IN_PROCESS[address] = security


def unregister_local(address: str) -> None:
    _IN_PROCESS.pop(address, None)


#: permission bits that let other users read or change a secret file
_SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO


def check_private(path: str | Path) -> None:
    """Refuse a secret file that other users can read or write (as ssh does for keys)."""
    if os.name != "posix":
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & _SHARED_BITS:
        raise PermissionError(
            f"token file {str(path)!r} is accessible by other users (mode {mode:04o}); "
            f"anyone who reads it can run code on this cluster. Fix it with: "
            f"chmod 600 {str(path)!r}"
        )


def read_token_file(path: str | Path) -> str:
    check_private(path)
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"token file {str(path)!r} is empty")
    return token


def create_token_file(path: str | Path | None = None) -> tuple[str, Path]:
    """Read the token at ``path``, or create it (mode 0600) with a fresh random token."""
    target = Path(path) if path is not None else default_token_path()
    if target.exists():
        return read_token_file(target), target
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_hex(32)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, target


def security_for(address: str) -> Security:
    """The security to reach ``address`` with, found without asking the user."""
    if address in _IN_PROCESS:
        return _IN_PROCESS[address]
    path = default_token_path()
    if path.exists():
        return Security(token=read_token_file(path))
    raise FileNotFoundError(
        f"no token known for {address}: pass security=Security(token=...), a scheduler "
        f"file, or create {path} (shoal scheduler does so)"
    )


def write_scheduler_file(path: str | Path, address: str, token_path: Path | None) -> None:
    """Write the address and where the token lives; readable by the owner only."""
    info: dict[str, Any] = {
        "address": address,
        "token_file": str(token_path) if token_path else None,
    }
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if os.name == "posix":
        os.fchmod(fd, 0o600)  # the mode given to open applies only to a new file
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)


def read_scheduler_file(path: str | Path) -> tuple[str, Security]:
    """The address and security named by a scheduler file."""
    info = json.loads(Path(path).read_text())
    address = info["address"]
    token_file = info.get("token_file")
    if token_file:
        return address, Security(token=read_token_file(token_file))
    if address in _IN_PROCESS:
        return address, _IN_PROCESS[address]
    return address, Security(token=None)
