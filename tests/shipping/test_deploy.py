"""Shipping: the Dockerfile (hadolint, consistency with the package) and the Kubernetes
manifests (kustomize, kubernetes-validate, Prometheus Operator objects, rule drift).

No image can be built and no cluster reached here, so this checks everything that can be
checked without them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI (the test extras install it on 3.10)
    import tomli as tomllib

from exporter import __version__
from exporter.cli import DEFAULT_PORT
from exporter.config import Config, load_config_text, parse_duration
from tests.conftest import ROOT, run_cli

K8S = ROOT / "deploy" / "kubernetes"
RULES = ROOT / "deploy" / "prometheus" / "rules"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN))
    assert found, f"{name} not found next to {sys.executable}: run ./scripts/test"
    return found


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (w, _) in enumerate(steps) if w == "FROM")
    return steps[last_from:]


def test_hadolint_passes_with_no_ignored_rules() -> None:
    run = subprocess.run(
        [tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hadolint ignore" not in (ROOT / "Dockerfile").read_text()
    assert not (ROOT / ".hadolint.yaml").exists()


def test_every_copied_file_exists_and_is_not_docker_ignored() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copies = [args for word, args in dockerfile() if word == "COPY" and "--from" not in args]
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") not in ignored, source
    # pyproject's readme must be in the build context too.
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert any(readme in shlex.split(a) for a in copies)


def test_entrypoint_port_health_and_volume_match_the_exporter() -> None:
    steps = dict(final_stage())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = yaml.safe_load(steps["ENTRYPOINT"])
    assert entry == ["huaweicloud-task-exporter"]
    assert scripts[entry[0]] == "exporter.cli:entry"
    assert steps["EXPOSE"] == str(DEFAULT_PORT)
    health = steps["HEALTHCHECK"]
    assert f"http://127.0.0.1:{DEFAULT_PORT}/healthz" in health
    # Non-root, and the state (default ./huaweicloud-task-exporter.db) in the volume.
    user = steps["USER"].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    workdir = steps["WORKDIR"]
    assert yaml.safe_load(steps["VOLUME"]) == [workdir]
    default_state = Config.model_fields["state_path"].default
    assert (Path(workdir) / default_state).parent == Path(workdir)
    cmd = yaml.safe_load(steps["CMD"])
    assert cmd == ["--config.file=/etc/huaweicloud-task-exporter/config.yml"]


def test_demo_runs_with_no_config_at_all(tmp_path: Path) -> None:
    """`docker run IMAGE --demo`: no file, an empty working directory."""
    run = subprocess.run(
        [tool("huaweicloud-task-exporter"), "--demo", "--once"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "huaweicloud_task_up{" in run.stdout
    assert list(tmp_path.iterdir()) == []


# -- Kubernetes ------------------------------------------------------------------------------


def render(overlay: str | Path) -> list[dict[str, Any]]:
    run = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("overlay", ["base", "sharded"])
def test_manifests_pass_kubernetes_validate(tmp_path: Path, overlay: str) -> None:
    files = []
    for i, doc in enumerate(render(overlay)):
        path = tmp_path / f"{i}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    files.append(str(K8S / "secret.example.yaml"))
    run = subprocess.run(
        [tool("kubernetes-validate"), "--strict", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    built_in = [f for f in files if "PrometheusRule" not in f and "ServiceMonitor" not in f]
    assert run.stdout.count("passed for resource") == len(built_in)


@pytest.mark.parametrize("overlay", ["base", "sharded"])
def test_prometheus_operator_objects_have_what_the_operator_requires(overlay: str) -> None:
    docs = render(overlay)
    (monitor,) = by_kind(docs, "ServiceMonitor")
    (rule,) = by_kind(docs, "PrometheusRule")
    for obj in (monitor, rule):
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["metadata"]["name"]
    # The ServiceMonitor selects exactly one Service, and names one of its ports.
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s
        for s in by_kind(docs, "Service")
        if selector.items() <= s["metadata"].get("labels", {}).items()
    ]
    assert len(selected) == 1
    ports = {p["name"] for p in selected[0]["spec"]["ports"]}
    assert monitor["spec"]["endpoints"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"
        assert parse_duration(endpoint["scrapeTimeout"]) <= parse_duration(endpoint["interval"])
    # The job label the alerts expect (job=~".*huaweicloud-task-exporter.*").
    job = selected[0]["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert "huaweicloud-task-exporter" in job
    # PrometheusRule: named groups of rules, each a record or an alert with an expression.
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names))
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert r["expr"]
            assert ("record" in r) != ("alert" in r)


def test_prometheusrule_is_the_shipped_rules_files() -> None:
    (rule,) = by_kind(render("base"), "PrometheusRule")
    shipped = [
        g
        for path in sorted(RULES.glob("*.yml"))
        for g in yaml.safe_load(path.read_text())["groups"]
    ]
    assert rule["spec"]["groups"] == shipped
    check = subprocess.run(
        [sys.executable, str(K8S / "render_prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert check.returncode == 0, check.stdout


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("overlay", "kind"), [("base", "Deployment"), ("sharded", "StatefulSet")])
def test_workload_is_locked_down_probed_and_sized(overlay: str, kind: str) -> None:
    docs = render(overlay)
    (workload,) = by_kind(docs, kind)
    assert len(by_kind(docs, "Deployment" if kind == "StatefulSet" else "StatefulSet")) == 0
    pod = _pod(workload)
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["containerPort"] for p in container["ports"]} == {DEFAULT_PORT}
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][key])
    # The config where the image's CMD looks for it; the state in a persistent volume at the
    # image's VOLUME, which is where the ConfigMap's state_path points.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    steps = dict(final_stage())
    assert container["args"][0] == yaml.safe_load(steps["CMD"])[0]
    assert mounts["state"] == steps["WORKDIR"]
    assert mounts["tmp"] == "/tmp"
    (config_map,) = by_kind(docs, "ConfigMap")
    config = yaml.safe_load(config_map["data"]["config.yml"])
    assert str(Path(config["state_path"]).parent) == mounts["state"]
    if kind == "StatefulSet":
        assert workload["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
        args = container["args"]
        assert f"--shard.count={workload['spec']['replicas']}" in args
        assert "--shard.index=auto" in args
        assert by_kind(docs, "PersistentVolumeClaim") == []
    else:
        assert workload["spec"]["strategy"]["type"] == "Recreate"
        (claim,) = by_kind(docs, "PersistentVolumeClaim")
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_configmap_holds_a_valid_exporter_config(tmp_path: Path) -> None:
    (config_map,) = by_kind(render("base"), "ConfigMap")
    text = config_map["data"]["config.yml"]
    env = {"HUAWEICLOUD_SDK_AK": "AKFROMSECRET", "HUAWEICLOUD_SDK_SK": "sk-from-the-secret"}
    load_config_text(text, env=env)
    path = tmp_path / "config.yml"
    path.write_text(text)
    run = run_cli(f"--config.file={path}", "--check-config", env=env)
    assert run.rc == 0, run.stderr
    (secret,) = [yaml.safe_load((K8S / "secret.example.yaml").read_text())]
    (workload,) = by_kind(render("base"), "Deployment")
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in _pod(workload)["containers"][0]["env"]}
    assert refs == set(secret["stringData"])


# -- Kubernetes: overlays of your own ------------------------------------------------------

OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
WITHOUT_OPERATOR = K8S / "components" / "without-prometheus-operator"


def overlay(
    directory: Path,
    base: str,
    components: tuple[Path, ...] = (),
    images: tuple[dict[str, str], ...] = (),
) -> Path:
    """A user's overlay, as the README shows it: paths relative to its directory."""
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / base, directory)],
    }
    if components:
        doc["components"] = [os.path.relpath(c, directory) for c in components]
    if images:
        doc["images"] = list(images)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory


def images(docs: list[dict[str, Any]]) -> list[str]:
    return [
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in _pod(d)["containers"] + _pod(d).get("initContainers", [])
    ]


@pytest.mark.parametrize("base", ["base", "sharded"])
def test_image_is_the_release_tag_and_one_images_entry_changes_it(
    tmp_path: Path, base: str
) -> None:
    assert images(render(base)) == [f"huaweicloud-task-exporter:{__version__}"]
    pushed = {
        "name": "huaweicloud-task-exporter",
        "newName": "registry.example.com/team/huaweicloud-task-exporter",
        "newTag": "1.2.3",
    }
    mine = overlay(tmp_path / "mine", base, images=(pushed,))
    assert images(render(mine)) == ["registry.example.com/team/huaweicloud-task-exporter:1.2.3"]


@pytest.mark.parametrize("base", ["base", "sharded"])
def test_component_leaves_out_only_the_prometheus_operator_objects(
    tmp_path: Path, base: str
) -> None:
    full = render(base)
    assert {d["kind"] for d in full} >= OPERATOR_KINDS
    plain = render(overlay(tmp_path / "mine", base, components=(WITHOUT_OPERATOR,)))
    assert not [d for d in plain if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert plain == [d for d in full if d["kind"] not in OPERATOR_KINDS]


def _readme_overlay() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"cat > my-exporter/kustomization\.yaml <<'EOF'\n(.*?)\nEOF\n", readme, re.S)
    assert found, "the README's overlay example is gone"
    return found.group(1)


@pytest.mark.parametrize("base", ["base", "sharded"])
@pytest.mark.parametrize("operator", [True, False])
def test_readme_overlay_sets_the_pushed_image_and_can_leave_out_the_operator(
    tmp_path: Path, base: str, operator: bool
) -> None:
    text = _readme_overlay()
    assert "../deploy/kubernetes/base " in text
    text = text.replace("../deploy/kubernetes/base ", f"../deploy/kubernetes/{base} ")
    if not operator:
        text = re.sub(r"^# (components:|  - )", r"\1", text, flags=re.M)
    # The README's overlay sits at the repository's root: so does this copy, relatively.
    mine = tmp_path / "my-exporter"
    mine.mkdir()
    up = os.path.relpath(ROOT, mine)
    (mine / "kustomization.yaml").write_text(text.replace("../deploy/", f"{up}/deploy/"))
    for name in ("config.yml", "web.yml"):  # the README copies them from the example
        shutil.copy(K8S / "overlays" / "example" / name, mine / name)
    docs = render(mine)
    assert images(docs) == [f"registry.example.com/team/huaweicloud-task-exporter:{__version__}"]
    kinds = {d["kind"] for d in docs}
    assert (kinds >= OPERATOR_KINDS) if operator else not (OPERATOR_KINDS & kinds)
