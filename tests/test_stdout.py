"""`write_stdout`: every byte reaches stdout, however little each raw write takes."""

from __future__ import annotations

import io
import os
import select
import sys
import threading
import time

import pytest

from exporter.stdout import write_stdout

pytestmark = pytest.mark.smoke


class _Stingy(io.RawIOBase):
    """A raw file that takes at most 7 bytes a write; of every six writes, the third raises
    BlockingIOError with 2 bytes taken (as BufferedWriter does) and the sixth takes none and
    returns None (as FileIO does on a full non-blocking file)."""

    def __init__(self) -> None:
        self.got = bytearray()
        self.calls = 0

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int | None:
        data = bytes(memoryview(b))  # type: ignore[arg-type]
        self.calls += 1
        if self.calls % 6 == 0:
            return None
        if self.calls % 6 == 3:
            self.got += data[:2]
            raise BlockingIOError(11, "full", 2)
        self.got += data[:7]
        return min(7, len(data))


class _Stdout:
    def __init__(self, buffer: io.RawIOBase) -> None:
        self.buffer = buffer

    def flush(self) -> None:
        pass


def test_every_byte_of_a_partial_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _Stingy()
    monkeypatch.setattr(sys, "stdout", _Stdout(raw))
    waits: list[object] = []

    def wait(
        r: object, w: list[object], x: object
    ) -> tuple[list[object], list[object], list[object]]:
        waits.append(w)
        return [], w, []

    monkeypatch.setattr(select, "select", wait)
    data = bytes(range(256)) * 40
    write_stdout(data)
    assert bytes(raw.got) == data
    assert waits  # a write that took nothing waited for the file instead of spinning


def test_text_is_written_as_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _Stingy()
    monkeypatch.setattr(sys, "stdout", _Stdout(raw))
    monkeypatch.setattr(select, "select", lambda r, w, x: ([], w, []))
    write_stdout("tâche: échouée\n" * 30)
    assert raw.got.decode("utf-8") == "tâche: échouée\n" * 30


def test_a_text_stream_without_a_buffer_gets_text(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    write_stdout(b"a \xc3\xa9\n")
    write_stdout("b è\n")
    assert out.getvalue() == "a é\nb è\n"


def test_a_full_nonblocking_pipe_is_waited_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real non-blocking pipe, read only after it filled: nothing lost, nothing spun."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    raw = io.FileIO(write_end, "wb", closefd=True)
    monkeypatch.setattr(sys, "stdout", _Stdout(raw))
    data = os.urandom(300 * 1024)
    got = bytearray()

    def read() -> None:
        time.sleep(0.3)
        while chunk := os.read(read_end, 65536):
            got.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    write_stdout(data)
    raw.close()
    reader.join(10)
    os.close(read_end)
    assert bytes(got) == data
