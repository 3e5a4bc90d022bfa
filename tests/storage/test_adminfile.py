"""The small JSON admin files' one reader (ivr/storage/adminfile.py), through each file's own reader:
a missing file gives its default, a damaged one an error naming the file and what it holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.runtime.forwarding import ForwardingError, forwarding_path, read_forwarding
from ivr.storage.adminfile import read_json_file
from ivr.storage.switches import SwitchError, read_switches, switches_path
from ivr.web.users import UserError, read_users, users_path

READERS = [
    pytest.param(read_switches, switches_path, SwitchError, "switch positions", {}, id="switches"),
    pytest.param(
        read_forwarding, forwarding_path, ForwardingError, "forwarding", {}, id="forwarding"
    ),
    pytest.param(
        read_users,
        users_path,
        UserError,
        "the console users",
        {"passwords": {}, "tokens": {}},
        id="users",
    ),
]


@pytest.mark.parametrize(("read", "where", "error", "what", "default"), READERS)
def test_a_missing_file_gives_the_default(
    tmp_path: Path, read: Callable[[Path], Any], where: Any, error: type, what: str, default: Any
) -> None:
    assert read(tmp_path) == default


DAMAGE = [
    pytest.param(b"{oops", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
                 id="not-json"),
    pytest.param(b'{"a": "\xff"}', "'utf-8' codec can't decode byte 0xff in position 7: invalid start byte",
                 id="not-utf8"),
]


@pytest.mark.parametrize(("content", "reason"), DAMAGE)
@pytest.mark.parametrize(("read", "where", "error", "what", "default"), READERS)
def test_a_damaged_file_names_the_file_and_why(
    tmp_path: Path,
    read: Callable[[Path], Any],
    where: Callable[[Path], Path],
    error: type,
    what: str,
    default: Any,
    content: bytes,
    reason: str,
) -> None:
    path = where(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with pytest.raises(error) as info:
        read(tmp_path)
    assert str(info.value) == f"{path}: cannot read {what}: {reason}"


def test_a_folder_in_the_files_place_is_an_error_not_a_default(tmp_path: Path) -> None:
    (tmp_path / "f.json").mkdir()
    with pytest.raises(
        ValueError,
        match=rf"^{tmp_path / 'f.json'}: cannot read things: \[Errno 21\] Is a directory",
    ):
        read_json_file(tmp_path / "f.json", "things", ValueError, default={})
