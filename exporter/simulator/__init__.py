"""A simulator of the Huawei Cloud DCS and DMS task APIs, over real HTTP.

Used by `--demo`, by the tests, and standalone with `python -m exporter.simulator`.
"""

from exporter.simulator.server import Simulator, admin_call
from exporter.simulator.world import Churn, Fault, Options, SimInstance, SimTask, World

__all__ = [
    "Churn",
    "Fault",
    "Options",
    "SimInstance",
    "SimTask",
    "Simulator",
    "World",
    "admin_call",
]
