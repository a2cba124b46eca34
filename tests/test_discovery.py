"""Secret files: a token others can read is refused; scheduler files are private."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from shoal import discovery

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_world_readable_token_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sekrit\n")
    token_file.chmod(0o644)
    expected = f"chmod 600 {str(token_file)!r}"
    with pytest.raises(PermissionError, match=re.escape(expected)) as info:
        discovery.read_token_file(token_file)
    assert str(token_file) in str(info.value) and "0644" in str(info.value)


def test_a_group_readable_token_file_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sekrit\n")
    token_file.chmod(0o640)
    with pytest.raises(PermissionError, match="accessible by other users"):
        discovery.read_token_file(token_file)


def test_a_private_token_file_is_read(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sekrit\n")
    token_file.chmod(0o600)
    assert discovery.read_token_file(token_file) == "sekrit"


def test_a_scheduler_file_through_a_shared_token_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sekrit\n")
    token_file.chmod(0o604)
    scheduler_file = tmp_path / "scheduler.json"
    discovery.write_scheduler_file(scheduler_file, "tcp://127.0.0.1:1", token_file)
    with pytest.raises(PermissionError, match=re.escape(str(token_file))):
        discovery.read_scheduler_file(scheduler_file)


def test_a_created_token_file_is_private(tmp_path: Path) -> None:
    token, path = discovery.create_token_file(tmp_path / "sub" / "token")
    assert mode_of(path) == 0o600
    assert discovery.create_token_file(path) == (token, path)


def test_an_existing_scheduler_file_becomes_private_when_written(tmp_path: Path) -> None:
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text("{}")
    scheduler_file.chmod(0o666)
    discovery.write_scheduler_file(scheduler_file, "tcp://127.0.0.1:1", None)
    assert mode_of(scheduler_file) == 0o600
    assert json.loads(scheduler_file.read_text())["address"] == "tcp://127.0.0.1:1"
