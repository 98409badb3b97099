"""biogpt.model.files: the one opener of inputs and the atomic writers every output goes through."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest

from biogpt.model.errors import InputDataError, OutputError, PathError
from biogpt.model.files import (
    atomic_directory,
    atomic_file,
    check_writable_path,
    file_mode,
    is_storage_error,
    open_input,
    output_failure,
    read_text,
    text_lines,
    write_text_atomic,
)

from tests.faults import file_size_limit, temporaries


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ reading
def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    text = "première ligne\nsecond line\n"
    for name in ("a.jsonl.gz", "a.gz", "a"):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as f:
            f.write(text)
        assert list(text_lines(tmp_path / name)) == [(1, "première ligne"), (2, "second line")]
        assert read_text(tmp_path / name) == text
        with open_input(tmp_path / name) as source:
            assert source.gzipped


def test_bad_utf8_names_file_line_and_column(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"fine\nab\xffc\n")
    with pytest.raises(InputDataError, match=r"x.txt:2: bytes that are not UTF-8 \(at column 3\)"):
        list(text_lines(path))
    gz = tmp_path / "x.txt.gz"
    gz.write_bytes(gzip.compress(b"fine\nab\xffc\n"))
    with pytest.raises(InputDataError, match=r"x.txt.gz:2: bytes that are not UTF-8"):
        read_text(gz)


def test_bom_crlf_binary_broken_gzip_and_wrong_paths(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\r\nworld\r\n")
    assert list(text_lines(path)) == [(1, "hello"), (2, "world")]
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(InputDataError, match="model.bin: looks like a binary file"):
        list(text_lines(binary))
    cut = tmp_path / "cut.gz"
    whole = gzip.compress("".join(f"line {i * 7919 % 100003}\n" for i in range(20000)).encode())
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputDataError, match=r"cut.gz: cannot read \((broken gzip stream|gzip stream cut short)"):
        list(text_lines(cut))
    with pytest.raises(PathError, match="missing.txt: no such file"):
        list(text_lines(tmp_path / "missing.txt"))
    with pytest.raises(PathError, match="is a directory, expected a file"):
        list(text_lines(tmp_path))


# ------------------------------------------------------------------ atomic_file
def test_atomic_file_appears_complete_with_an_ordinary_mode(tmp_path, umask_022):
    target = tmp_path / "out.jsonl"
    with atomic_file(target) as handle:
        handle.write("one\n")
        assert not target.exists()  # nothing under the final name while writing
        assert len(list(tmp_path.iterdir())) == 1
    assert target.read_text() == "one\n" and mode(target) == 0o644
    with atomic_file(target, binary=True) as handle:  # replacing: the old file until the end
        handle.write(b"two\n")
        assert target.read_text() == "one\n"
    assert target.read_bytes() == b"two\n" and mode(target) == 0o644
    write_text_atomic(target, "three\n")
    assert target.read_text() == "three\n"
    assert temporaries(tmp_path) == []


def test_atomic_file_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as handle:
            handle.write("partial")
            raise RuntimeError("the run failed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as handle:
            handle.write("new")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_file_on_a_full_disk_names_the_final_path(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(OutputError) as info:
        with file_size_limit(1000):
            with atomic_file(target) as handle:
                for _ in range(100):
                    handle.write("x" * 100 + "\n")
    assert str(info.value) == f"{target}: file too large"
    assert list(tmp_path.iterdir()) == []


def test_atomic_file_to_stdout_and_devices(tmp_path, capsys):
    with atomic_file("-") as handle:
        handle.write("to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"
    with atomic_file("/dev/null") as handle:  # not renamed onto: written as it comes
        handle.write("gone\n")
    assert not list(Path("/dev").glob("null.*tmp"))


def test_output_paths_are_checked(tmp_path):
    with pytest.raises(PathError, match="is a directory; give a file name"):
        check_writable_path(tmp_path)
    with pytest.raises(PathError, match="no-such: no such directory for the output file out.txt"):
        check_writable_path(tmp_path / "no-such" / "out.txt")
    check_writable_path(tmp_path / "fine.txt")


def test_storage_errors_and_their_one_line(tmp_path):
    assert is_storage_error(OSError(28, "No space left on device"))
    assert not is_storage_error(ValueError("x"))
    error = output_failure(tmp_path / "o.jsonl", OSError(28, "No space left on device"))
    assert isinstance(error, OutputError) and str(error) == f"{tmp_path / 'o.jsonl'}: no space left on device"


def test_file_mode_follows_the_umask(umask_022):
    assert file_mode() == 0o644
    os.umask(0o077)
    assert file_mode() == 0o600


# ------------------------------------------------------------------ atomic_directory
def test_atomic_directory_appears_with_all_its_files(tmp_path, umask_022):
    target = tmp_path / "sub" / "model"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
        weights = tmp / "model.safetensors"
        weights.write_bytes(b"w")
        os.chmod(weights, 0o600)  # as safetensors writes it
        (tmp / "nested").mkdir()
        (tmp / "nested" / "a.txt").write_text("a")
        assert not target.exists()
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "nested"]
    assert mode(target / "model.safetensors") == 0o644 and mode(target / "config.json") == 0o644
    assert mode(target) == 0o755 and mode(target / "nested") == 0o755
    assert temporaries(tmp_path) == []


def test_atomic_directory_into_an_existing_folder_keeps_other_files(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "NOTES.md").write_text("mine")
    (target / "config.json").write_text("old")
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("new")
        assert (target / "config.json").read_text() == "old"
    assert (target / "config.json").read_text() == "new" and (target / "NOTES.md").read_text() == "mine"
    assert temporaries(tmp_path) == []


def test_atomic_directory_failure_removes_what_it_started(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("weights failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError) as info:
        with file_size_limit(1000):
            with atomic_directory(target) as tmp:
                (tmp / "config.json").write_text("{}")
                (tmp / "model.safetensors").write_bytes(b"w" * 5000)
    assert str(info.value) == f"{target}: file too large"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(PathError, match="exists and is not a directory"):
        with atomic_directory(tmp_path / "file"):
            pass
