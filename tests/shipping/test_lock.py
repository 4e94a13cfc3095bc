"""The image's dependencies: requirements.lock pins every runtime dependency of pyproject.toml
to one version with its hashes, and the Dockerfile installs exactly that, hashes required.

When `dependencies` in pyproject.toml change and the lock no longer satisfies them, these
tests fail until `scripts/lock` is run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI (the test extras install it on 3.10)
    import tomli as tomllib

from tests.conftest import ROOT

LOCK = ROOT / "requirements.lock"
# The image's interpreter and platform, for the markers of pyproject's dependencies.
IMAGE_ENV = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def parse_lock(text: str) -> dict[str, tuple[Version, list[str]]]:
    """Pinned packages by canonical name: version and hashes (one requirement per block)."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            assert name not in pins, f"{name} is pinned twice"
            pins[name] = (Version(match.group(2)), [])
            current = name
        elif line.startswith("--hash=") and current is not None:
            pins[current][1].append(line.removeprefix("--hash=").rstrip(" \\"))
        else:
            raise AssertionError(f"unexpected line in the lock: {line!r}")
    return pins


def runtime_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(d) for d in project["dependencies"]]


def unsatisfied(pins: dict[str, tuple[Version, list[str]]]) -> list[str]:
    problems = []
    for req in runtime_dependencies():
        if req.marker is not None and not req.marker.evaluate(IMAGE_ENV):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(pinned[0], prereleases=True):
            problems.append(f"{req.name}: the lock pins {pinned[0]}, pyproject wants {req}")
    return problems


@pytest.mark.smoke
def test_the_lock_satisfies_every_runtime_dependency() -> None:
    problems = unsatisfied(parse_lock(LOCK.read_text()))
    assert not problems, "run scripts/lock:\n" + "\n".join(problems)


def test_every_pinned_package_has_sha256_hashes() -> None:
    pins = parse_lock(LOCK.read_text())
    assert len(pins) >= len(runtime_dependencies())
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_no_test_dependency_is_in_the_image() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    test_only = {
        canonicalize_name(Requirement(d).name) for d in project["optional-dependencies"]["test"]
    }
    runtime = {canonicalize_name(r.name) for r in runtime_dependencies()}
    assert not (set(parse_lock(LOCK.read_text())) & (test_only - runtime))


def test_a_stale_lock_is_caught(tmp_path: Path) -> None:
    """What the first test does when pyproject moves on: a lock missing a package or pinning
    a version outside the range is reported, by name."""
    pins = parse_lock(LOCK.read_text())
    missing = {k: v for k, v in pins.items() if k != "bcrypt"}
    assert unsatisfied(missing) == ["bcrypt is not in requirements.lock"]
    old = {**pins, "pydantic": (Version("1.10.0"), ["sha256:" + "0" * 64])}
    (problem,) = unsatisfied(old)
    assert problem.startswith("pydantic: the lock pins 1.10.0")
    with pytest.raises(AssertionError, match="pinned twice"):
        parse_lock("idna==3.0 \\\n    --hash=sha256:" + "0" * 64 + "\nidna==3.1\n")


def test_the_image_installs_the_lock_with_hashes_and_nothing_else() -> None:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    installs = [line.strip() for line in text.splitlines() if "pip install" in line]
    assert installs, "no pip install in the Dockerfile"
    joined = " ".join(installs)
    assert "--require-hashes" in joined
    assert "-r /tmp/requirements.lock" in joined
    # The project itself: without resolving anything more.
    assert re.search(r"pip install [^&]*--no-deps [^&]*--no-index [^&]*\.whl", joined)
    for command in re.split(r"&&", joined):
        if "pip install" in command and "requirements.lock" not in command:
            assert "--no-deps" in command, command
    assert "COPY requirements.lock" in text
