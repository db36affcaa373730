"""Atomic writes: a failed writer leaves the old file, and writers never share a temporary file."""
import pytest

from course_lib.atomic import atomic_write, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.md"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half of the new ta")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_two_writers_get_their_own_temporary_and_the_last_one_wins(tmp_path):
    target = tmp_path / "sub" / "cell.json"
    with atomic_write(target) as a, atomic_write(target) as b:
        assert a != b and a.parent == b.parent == target.parent
        a.write_text("A")
        b.write_text("B")
        assert not target.exists()                 # nothing is visible before a writer finishes
    assert target.read_text() == "A"               # the outer block finishes last
    assert sorted(p.name for p in target.parent.iterdir()) == ["cell.json"]
