"""The state file's lock follows the file, and a file pulled from under the exporter is noticed.

A second exporter on the same database, by any name, would double every count; a deleted or
replaced database would silently lose every later commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.core.counting import PollCommit
from exporter.polling.state import StateError, StateStore
from tests.conftest import PROJECT, ExporterProcess, Sim, all_up, config_doc, write_config

BUCKETS = [1.0, 10.0]
Open = Callable[[Path], StateStore]


@pytest.fixture
def stores() -> Iterator[Open]:
    opened: list[StateStore] = []

    def open_store(path: Path) -> StateStore:
        store = StateStore(path, BUCKETS)
        opened.append(store)
        return store

    try:
        yield open_store
    finally:
        for store in opened:
            store.close()


def _commit(store: StateStore, n: int) -> None:
    store.commit(
        PollCommit(
            task_list_key=f"t{n}", baseline_at=1.0, watermark=float(n), last_success=float(n)
        )
    )


def test_a_second_store_through_a_symlink_elsewhere_is_refused(
    tmp_path: Path, stores: Open
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    stores(tmp_path / "a" / "state.db")
    (tmp_path / "b" / "other.db").symlink_to(tmp_path / "a" / "state.db")
    with pytest.raises(StateError, match="in use by another exporter process"):
        stores(tmp_path / "b" / "other.db")


def test_a_second_store_through_a_hard_link_is_refused(tmp_path: Path, stores: Open) -> None:
    first = stores(tmp_path / "state.db")
    _commit(first, 1)
    os.link(tmp_path / "state.db", tmp_path / "hard.db")
    with pytest.raises(StateError, match="symlink or hard link"):
        stores(tmp_path / "hard.db")


def test_the_lock_goes_with_close(tmp_path: Path, stores: Open) -> None:
    first = stores(tmp_path / "state.db")
    _commit(first, 1)
    first.close()
    again = stores(tmp_path / "state.db")
    assert again.load_task_list("t1").watermark == 1.0


def test_deleting_the_state_files_fails_the_next_commit(tmp_path: Path, stores: Open) -> None:
    store = stores(tmp_path / "state.db")
    _commit(store, 1)
    for p in tmp_path.glob("state.db*"):
        p.unlink()
    with pytest.raises(StateError, match=r"was deleted or replaced.*restart the exporter"):
        _commit(store, 2)
    assert store.broken is not None
    # It stays failed: a file put back at the path is not the one this store writes.
    StateStore(tmp_path / "state.db", BUCKETS).close()
    with pytest.raises(StateError):
        _commit(store, 3)


def test_replacing_the_database_fails_the_next_commit(tmp_path: Path, stores: Open) -> None:
    store = stores(tmp_path / "state.db")
    _commit(store, 1)
    (tmp_path / "new.db").write_bytes(b"")
    os.replace(tmp_path / "new.db", tmp_path / "state.db")
    with pytest.raises(StateError, match="was deleted or replaced"):
        _commit(store, 2)


def test_deleting_the_wal_fails_the_next_commit(tmp_path: Path, stores: Open) -> None:
    store = stores(tmp_path / "state.db")
    _commit(store, 1)
    (tmp_path / "state.db-wal").unlink()
    with pytest.raises(StateError, match="-wal"):
        _commit(store, 2)


def test_a_running_exporter_notices_its_state_file_deleted(
    sim: Sim, tmp_path: Path, exporters: Callable[..., ExporterProcess]
) -> None:
    inst = sim.world.add_instance("dcs", "redis-a", PROJECT)
    now = time.time()
    sim.world.add_task(inst.id, "bindInstancePublicIp", "SUCCESS", now - 300, now - 290)
    entry = {"service": "dcs", "id": inst.id, "name": inst.name}
    doc = config_doc(sim, [entry], state_path=tmp_path / "s.db")
    proc = exporters(write_config(tmp_path / "c.yml", doc))
    proc.wait_for(lambda m: all_up(m, 1), what="all up")
    assert proc.get("/healthz")[0] == 200
    for p in tmp_path.glob("s.db*"):
        p.unlink()
    proc.wait_for(lambda m: not all_up(m, 1), what="the poll failing")
    status, _, body = proc.get("/healthz")
    assert status == 503
    assert b"was deleted or replaced" in body
    assert "state file unusable" in proc.output
    assert not (tmp_path / "s.db").exists()
