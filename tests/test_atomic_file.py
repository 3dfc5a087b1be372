"""The one atomic write: all or nothing, no temporary left behind, and files that follow the process umask."""

import os
import stat

import pytest

from reid_sdk._utils.atomic_file import atomic_write, temporary_target


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """A model or checkpoint served by another user must be readable when the umask allows it (not always 0600)."""
    previous = os.umask(umask)
    try:
        with atomic_write(tmp_path / "model.onnx") as handle:
            handle.write(b"graph")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == mode


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "best.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk"):
        with atomic_write(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("disk went away")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_temporaries_name_the_file_they_were_to_replace():
    assert temporary_target(".g000001.metadata.sqlite.0a1b2c3d.tmp") == "g000001.metadata.sqlite"
    assert temporary_target("g000001.metadata.sqlite") is None
