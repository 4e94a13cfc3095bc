"""Kubernetes the usual way: the shipped example overlay (deploy/kubernetes/overlays/example)
brings the user's configuration through generators (hash-suffixed, so a change rolls the
pod) and the web config through components/web-config (TLS, basic auth, probes over HTTPS
with credentials), all rendered with `kubectl kustomize` and checked as a cluster would."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from exporter.config import ConfigError, load_config_text
from exporter.web.auth import BasicAuth
from exporter.web.webconfig import load_web_settings
from tests.certs import make_ca_and_server_cert
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "kubernetes"
EXAMPLE = K8S / "overlays" / "example"
HASHED = re.compile(r"^(?P<name>.+)-[a-z0-9]{10}$")
ENV = {"HUAWEICLOUD_SDK_AK": "AKFROMSECRET", "HUAWEICLOUD_SDK_SK": "sk-from-the-secret"}


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert found, "kubectl not found next to the interpreter: run ./scripts/test"
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    run = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, prefix: str = "") -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix)]
    return found


def copy_example(tmp_path: Path, base: str = "base") -> Path:
    """The example overlay as a user's own copy elsewhere (its relative paths fixed)."""
    mine = tmp_path / "my-exporter"
    shutil.copytree(EXAMPLE, mine)
    up = os.path.relpath(K8S, mine)
    text = (mine / "kustomization.yaml").read_text().replace("../../", f"{up}/")
    text = text.replace(f"{up}/base ", f"{up}/{base} ")
    (mine / "kustomization.yaml").write_text(text)
    return mine


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    return found


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = workload(docs)["spec"]["template"]["spec"]["containers"]
    return found  # type: ignore[no-any-return]


@pytest.mark.smoke
def test_the_overlay_renders_the_users_configuration_hash_suffixed() -> None:
    docs = render(EXAMPLE)
    config_map = one(docs, "ConfigMap")
    match = HASHED.match(config_map["metadata"]["name"])
    assert match, config_map["metadata"]["name"]
    assert match.group("name") == "huaweicloud-task-exporter-config"
    # The overlay's file, not the base's placeholder.
    assert config_map["data"] == {"config.yml": (EXAMPLE / "config.yml").read_text()}
    assert (EXAMPLE / "config.yml").read_text() != (K8S / "base" / "config.yml").read_text()
    load_config_text(config_map["data"]["config.yml"], env=ENV)
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]


def test_changing_the_configuration_changes_the_name_so_the_pod_rolls(tmp_path: Path) -> None:
    mine = copy_example(tmp_path)
    before = one(render(mine), "ConfigMap")["metadata"]["name"]
    web_before = one(render(mine), "Secret")["metadata"]["name"]
    config = mine / "config.yml"
    config.write_text(config.read_text().replace("poll_interval: 60s", "poll_interval: 2m"))
    docs = render(mine)
    after = one(docs, "ConfigMap")["metadata"]["name"]
    assert after != before
    assert HASHED.match(after)
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == after
    assert one(docs, "Secret")["metadata"]["name"] == web_before  # only what changed
    (mine / "web.yml").write_text((mine / "web.yml").read_text() + "# rotated\n")
    assert one(render(mine), "Secret")["metadata"]["name"] != web_before


def test_the_web_config_and_the_tls_secret_are_mounted_where_the_flag_points() -> None:
    docs = render(EXAMPLE)
    secret = one(docs, "Secret")
    assert HASHED.match(secret["metadata"]["name"])
    web_text = base64.b64decode(secret["data"]["web.yml"]).decode()
    assert web_text == (EXAMPLE / "web.yml").read_text()
    c = container(docs)
    (flag,) = [a for a in c["args"] if a.startswith("--web.config.file=")]
    web_path = Path(flag.split("=", 1)[1])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    (web_mount,) = [m for m in mounts.values() if Path(m["mountPath"]) == web_path.parent]
    assert web_mount["readOnly"] is True
    assert volumes[web_mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    assert web_path.name in secret["data"]
    # The certificate and key the web config names are in the TLS Secret's mount.
    web = yaml.safe_load(web_text)
    tls_mount = mounts["tls"]
    assert volumes["tls"]["secret"]["secretName"] == "huaweicloud-task-exporter-tls"
    for key, expected in (("cert_file", "tls.crt"), ("key_file", "tls.key")):
        path = Path(web["tls_server_config"][key])
        assert path.parent == Path(tls_mount["mountPath"])
        assert path.name == expected  # the keys of a kubernetes.io/tls Secret
    # Readable by the exporter's group only.
    assert volumes["tls"]["secret"]["defaultMode"] == 0o440
    assert workload(docs)["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10418


def test_probes_and_the_service_monitor_use_https_with_credentials() -> None:
    docs = render(EXAMPLE)
    c = container(docs)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert get["scheme"] == "HTTPS"
        (header,) = get["httpHeaders"]
        assert header["name"] == "Authorization"
        assert header["value"].startswith("Basic ")
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == "huaweicloud-task-exporter-tls"
    assert endpoint["tlsConfig"]["serverName"] == one(docs, "Service")["metadata"]["name"]
    assert set(endpoint["basicAuth"]) == {"username", "password"}


def test_the_shipped_web_config_refuses_to_start_until_its_hashes_are_real(
    tmp_path: Path,
) -> None:
    """As shipped, only the two placeholder hashes are wrong; with real ones (and the TLS
    Secret's files where the pod mounts them) it loads, and the probes' header, made the way
    the overlay's comment says, passes its user's hash."""
    make_ca_and_server_cert(tmp_path, ["huaweicloud-task-exporter"], [])
    text = (EXAMPLE / "web.yml").read_text()
    text = text.replace("/etc/huaweicloud-task-exporter-tls/tls.crt", str(tmp_path / "server.pem"))
    text = text.replace(
        "/etc/huaweicloud-task-exporter-tls/tls.key", str(tmp_path / "server-key.pem")
    )
    (tmp_path / "web.yml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_web_settings(tmp_path / "web.yml")
    assert [p.split(": ")[1] for p in info.value.problems] == [
        "basic_auth_users.prometheus",
        "basic_auth_users.kubelet",
    ]
    assert all("htpasswd" in p for p in info.value.problems)
    probe_password = b"probe-pw-for-the-test"
    for user, password in (("prometheus", b"scrape-pw"), ("kubelet", probe_password)):
        hashed = bcrypt.hashpw(password, bcrypt.gensalt(4)).decode()
        text = re.sub(rf"(?m)^  {user}: .*$", f"  {user}: '{hashed}'", text)
    (tmp_path / "web.yml").write_text(text)
    settings = load_web_settings(tmp_path / "web.yml")
    assert settings.tls is not None
    header = "Basic " + base64.b64encode(b"kubelet:" + probe_password).decode()
    assert BasicAuth(settings.users).verify(header)


@pytest.mark.parametrize("base", ["base", "sharded"])
def test_the_overlay_passes_kubernetes_validate_on_base_and_sharded(
    tmp_path: Path, base: str
) -> None:
    docs = render(copy_example(tmp_path, base))
    kind = "Deployment" if base == "base" else "StatefulSet"
    assert workload(docs)["kind"] == kind
    args = container(docs)["args"]
    assert args[0] == "--config.file=/etc/huaweicloud-task-exporter/config.yml"
    assert args[-1] == "--web.config.file=/etc/huaweicloud-task-exporter-web/web.yml"
    if base == "sharded":
        assert "--shard.index=auto" in args
    files = []
    for i, doc in enumerate(d for d in docs if not d["apiVersion"].startswith("monitoring.")):
        path = tmp_path / f"{i}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files.append(str(path))
    validate = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    assert validate
    run = subprocess.run(
        [validate, "--strict", *files], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("passed for resource") == len(files)


def test_the_readme_overlay_is_the_example_overlay() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"cat > my-exporter/kustomization\.yaml <<'EOF'\n(.*?)\nEOF\n", readme, re.S)
    assert found, "the README's overlay is gone"
    shown = yaml.safe_load(found.group(1).replace("../deploy/kubernetes/", "../../"))
    assert shown == yaml.safe_load((EXAMPLE / "kustomization.yaml").read_text())
    assert "cp deploy/kubernetes/overlays/example/config.yml" in readme
    assert "deploy/kubernetes/overlays/example/web.yml" in readme
