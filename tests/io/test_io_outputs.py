"""stdgen.io.outputs: outputs are claimed, never clobbered; inputs never replaced; leftovers removed."""

import pytest

from stdgen.errors import StdgenError
from stdgen.io.outputs import (
    MARKER_NAME,
    claim_output_dir,
    claim_output_file,
    claim_subfolder,
    read_marker,
    remove_leftovers,
    write_output_dir,
)


def test_new_empty_and_own_folders_are_claimed(tmp_path):
    assert claim_output_dir(tmp_path / "new", "demo") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    claim_output_dir(tmp_path / "empty", "demo")
    with write_output_dir(tmp_path / "out", "demo") as tmp:
        (tmp / "a.txt").write_text("1")
    assert read_marker(tmp_path / "out") == {"made_by": "stdgen demo", "files": ["a.txt"]}
    claim_output_dir(tmp_path / "out", "demo")  # its own earlier output
    with pytest.raises(StdgenError, match="did not make"):
        claim_output_dir(tmp_path / "out", "other")  # another command's
    (tmp_path / "out" / "mine.txt").write_text("user data")
    with pytest.raises(StdgenError, match=r"-o .*out: exists and holds files stdgen demo did not make \(mine.txt\)"):
        claim_output_dir(tmp_path / "out", "demo")  # a file added by the user is never deleted silently


def test_files_and_foreign_folders_need_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("hi")
    with pytest.raises(StdgenError, match="exists and is a file"):
        claim_output_dir(tmp_path / "keep.txt", "demo")
    claim_output_dir(tmp_path / "keep.txt", "demo", overwrite=True)
    with write_output_dir(tmp_path / "keep.txt", "demo") as tmp:
        (tmp / "x").write_text("1")
    assert (tmp_path / "keep.txt").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no hidden .tmp-old-keep.txt left


def test_inputs_are_never_replaced(tmp_path):
    data = tmp_path / "ds" / "0000000"
    data.mkdir(parents=True)
    (data / "meta.json").write_text("{}")
    for out in (data, tmp_path / "ds", tmp_path):
        with pytest.raises(StdgenError, match="input of this run"):
            claim_output_dir(out, "refine", inputs=[data], overwrite=True)
    claim_output_dir(data / "refined", "refine", inputs=[data])  # a new folder inside: nothing replaced
    with pytest.raises(StdgenError, match="inside an input"):
        claim_output_dir(data / "meta.json", "refine", inputs=[data], overwrite=True)
    with pytest.raises(StdgenError, match="is an input"):
        claim_output_file(data / "meta.json", "export", inputs=[data / "meta.json"], overwrite=True)


def test_output_file(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(StdgenError, match="is a folder"):
        claim_output_file(tmp_path / "d", "export", overwrite=True)
    (tmp_path / "f.vrm").write_bytes(b"user")
    with pytest.raises(StdgenError, match="not written by stdgen export"):
        claim_output_file(tmp_path / "f.vrm", "export")
    claim_output_file(tmp_path / "f.vrm", "export", overwrite=True)
    claim_output_file(tmp_path / "f.vrm", "export", recognise=lambda p: True)
    with pytest.raises(StdgenError, match="does not exist"):
        claim_output_file(tmp_path / "no" / "f.vrm", "export")


def test_subfolders(tmp_path):
    (tmp_path / "0000").mkdir()
    (tmp_path / "0000" / "mydata.txt").write_text("mine")
    with pytest.raises(StdgenError, match="0000: exists and holds files stdgen did not make"):
        claim_subfolder(tmp_path / "0000")
    claim_subfolder(tmp_path / "0000", overwrite=True)
    (tmp_path / "0001").mkdir()
    (tmp_path / "0001" / "meta.json").write_text("{}")
    claim_subfolder(tmp_path / "0001")
    (tmp_path / "0002").write_text("a file")
    with pytest.raises(StdgenError, match="not a folder"):
        claim_subfolder(tmp_path / "0002")


def test_leftovers_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / ".tmp-out.abc123").mkdir()
    (tmp_path / ".tmp-out.abc123" / "character.glb").write_bytes(b"x")
    (tmp_path / ".tmp-old-out").write_text("x")
    (tmp_path / ".tmp-other.1").mkdir()  # another output's: left alone
    assert remove_leftovers(tmp_path / "out") == 2
    with write_output_dir(tmp_path / "out", "demo") as tmp:
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-other.1", "out"]
    assert (tmp_path / "out" / MARKER_NAME).is_file()


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with write_output_dir(tmp_path / "out", "demo") as tmp:
            (tmp / "half").write_text("1")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
