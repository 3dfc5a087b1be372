"""The one atomic write: all or nothing, no temporary left behind, and files that follow the process umask."""

import errno
import os
import stat

import pytest

from reid_sdk._utils.atomic_file import DiskFullError, atomic_write, temporary_target


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


def _raising(error):
    def call(*args):
        raise error
    return call


def _disk_with_free_bytes(monkeypatch, free):
    import shutil
    from collections import namedtuple

    monkeypatch.setattr(shutil, "disk_usage", lambda folder: namedtuple("usage", "total used free")(10**9, 0, free))


def test_running_out_of_space_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "best.pt"
    target.write_bytes(b"old")
    with pytest.raises(DiskFullError, match=f"^no space left on device writing {target}$") as raised:
        with atomic_write(target) as handle:
            monkeypatch.setattr(handle, "write", _raising(OSError(errno.ENOSPC, "No space left on device")))
            handle.write(b"new")
    assert raised.value.errno == errno.ENOSPC and isinstance(raised.value, OSError)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["best.pt"]

    monkeypatch.setattr(os, "fsync", _raising(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(DiskFullError, match="writing"):  # delayed allocation: the space runs out at the fsync
        with atomic_write(target) as handle:
            handle.write(b"new")
    assert target.read_bytes() == b"old"


def test_a_writer_error_on_a_full_disk_is_disk_full_and_on_a_roomy_one_itself(tmp_path, monkeypatch):
    """torch.save on a full disk says "unexpected pos" (a RuntimeError): with no free space that means disk full."""
    _disk_with_free_bytes(monkeypatch, 0)
    with pytest.raises(DiskFullError, match=f"no space left on device writing {tmp_path / 'stage_01.pt'}"):
        with atomic_write(tmp_path / "stage_01.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    _disk_with_free_bytes(monkeypatch, 10**9)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with atomic_write(tmp_path / "stage_01.pt"):
            raise RuntimeError("unexpected pos 704 vs 598")
    assert not list(tmp_path.iterdir())


def test_temporaries_name_the_file_they_were_to_replace():
    assert temporary_target(".g000001.metadata.sqlite.0a1b2c3d.tmp") == "g000001.metadata.sqlite"
    assert temporary_target("g000001.metadata.sqlite") is None
