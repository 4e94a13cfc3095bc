"""The simulator's dialect variants and assumption breakers, page by page (no HTTP).

`list_page` is what both listeners serve: each option must change exactly what it says.
"""

from __future__ import annotations

import pytest

from exporter.simulator.server import list_page
from exporter.simulator.world import SimTask, World

pytestmark = pytest.mark.smoke

T0 = 1_800_000_000.0
WINDOW = "20270115070000"  # T0 - 3600: t0 and t1 are inside


def _world() -> tuple[World, list[SimTask]]:
    world = World(seed=1, clock=lambda: T0)
    inst = world.add_instance("kafka", "k")
    for i in range(4):
        world.add_task(inst.id, "modifyAutoTopic", "SUCCESS", T0 - 1800 * (i + 1), task_id=f"t{i}")
    return world, world.instance_tasks(inst.id)


def _ids(page: dict[str, object]) -> list[str]:
    tasks = page["tasks"]
    assert isinstance(tasks, list)
    return [t["id"] for t in tasks]


def test_dms_offset_is_honoured_only_when_asked_and_without_start() -> None:
    world, tasks = _world()
    assert _ids(list_page(world, "dms", tasks, {"offset": "1", "limit": "1"}, False)) == ["t0"]
    world.options.dms_offset = True
    assert _ids(list_page(world, "dms", tasks, {"offset": "1", "limit": "1"}, False)) == ["t1"]
    query = {"start": "2", "offset": "1", "limit": "1"}
    assert _ids(list_page(world, "dms", tasks, query, False)) == ["t2"]  # start wins


def test_dms_window_under_either_name() -> None:
    world, tasks = _world()
    assert _ids(list_page(world, "dms", tasks, {"begin_time": WINDOW}, False)) == ["t0", "t1"]
    assert len(_ids(list_page(world, "dms", tasks, {"start_time": WINDOW}, False))) == 4
    world.options.dms_window_param = "start_time"
    assert _ids(list_page(world, "dms", tasks, {"start_time": WINDOW}, False)) == ["t0", "t1"]
    assert len(_ids(list_page(world, "dms", tasks, {"begin_time": WINDOW}, False))) == 4


def test_dcs_offset_ignored() -> None:
    world, tasks = _world()
    assert _ids(list_page(world, "dcs", tasks, {"offset": "1", "limit": "1"}, False)) == ["t1"]
    world.options.dcs_offset = False
    assert _ids(list_page(world, "dcs", tasks, {"offset": "1", "limit": "1"}, False)) == ["t0"]


def test_fields_renamed_and_dropped() -> None:
    world, tasks = _world()
    world.options.rename_task_fields = {"created_at": "create_time", "user_name": ""}
    world.options.rename_answer_fields = {"task_count": "total"}
    page = list_page(world, "dms", tasks, {"limit": "1"}, False)
    assert set(page) == {"total", "tasks"}
    task = page["tasks"][0]
    assert "create_time" in task
    assert "created_at" not in task
    assert "user_name" not in task
    world.options.rename_answer_fields = {"tasks": ""}
    assert "tasks" not in list_page(world, "dms", tasks, {"limit": "1"}, False)
