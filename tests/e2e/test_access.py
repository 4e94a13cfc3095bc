"""Real-world access: every credential source, project resolution, each cloud's endpoints
through a proxy with a private CA, and discovery, against the simulator over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import TargetConfig
from exporter.simulator import Simulator, World
from exporter.simulator.fleet import DEMO_PROJECT
from tests.certs import make_ca_and_server_cert
from tests.conftest import (
    ACCESS_KEY,
    PROJECT,
    REGION,
    SECRET_KEY,
    ExporterProcess,
    Metrics,
    Sim,
    run_cli,
    run_once,
)
from tests.proxy import running_proxy

Start = Callable[..., ExporterProcess]
HTTP = {
    "timeout": "2s",
    "retries": 1,
    "backoff_initial": "50ms",
    "backoff_max": "100ms",
    "requests_per_second": 500,
    "burst": 500,
}

# The endpoint table of ../shared/reference/huaweicloud-task-apis.md, row by row.
REFERENCE_ENDPOINTS = {
    ("huaweicloud", "ap-southeast-1"): (
        "https://dcs.ap-southeast-1.myhuaweicloud.com",
        "https://dms.ap-southeast-1.myhuaweicloud.com",
        "https://iam.ap-southeast-1.myhuaweicloud.com",
    ),
    ("huaweicloud-eu", "eu-west-101"): (
        "https://dcs.eu-west-101.myhuaweicloud.eu",
        "https://dms.eu-west-101.myhuaweicloud.eu",
        "https://iam.eu-west-101.myhuaweicloud.eu",
    ),
    ("opentelekomcloud", "eu-de"): (
        "https://dcs.eu-de.otc.t-systems.com",
        "https://dms.eu-de.otc.t-systems.com",
        "https://iam.eu-de.otc.t-systems.com",
    ),
    ("opentelekomcloud", "eu-nl"): (
        "https://dcs.eu-nl.otc.t-systems.com",
        "https://dms.eu-nl.otc.t-systems.com",
        "https://iam.eu-nl.otc.t-systems.com",
    ),
}


def endpoints(sim: Sim) -> dict[str, str]:
    return {"dcs": sim.dcs_url, "dms": sim.dms_url, "iam": sim.server.iam_url}


def write(path: Path, targets: list[dict[str, Any]], **top: Any) -> Path:
    doc: dict[str, Any] = {
        "poll_interval": "1s",
        "overlap": "1m",
        "state_path": str(path.parent / "s.db"),
        "http": dict(HTTP),
        "targets": targets,
    }
    for key, value in top.items():
        if key == "http":
            doc["http"].update(value)
        else:
            doc[key] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def ups(m: Metrics) -> dict[str, float]:
    return {
        s.labels["instance_id"] or f"center:{s.labels['project_id']}": s.value
        for s in m.find("huaweicloud_task_up")
    }


# -- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(("cloud", "region"), list(REFERENCE_ENDPOINTS))
def test_each_cloud_picks_the_hosts_of_the_reference_table(cloud: str, region: str) -> None:
    tc = TargetConfig.model_validate({"region": region, "cloud": cloud, "task_center": True})
    assert (tc.endpoint("dcs"), tc.endpoint("dms"), tc.endpoint("iam")) == REFERENCE_ENDPOINTS[
        (cloud, region)
    ]
    tc = TargetConfig.model_validate(
        {
            "region": region,
            "cloud": cloud,
            "task_center": True,
            "endpoints": {"dms": "https://dms.internal:8443/"},
        }
    )
    assert tc.endpoint("dms") == "https://dms.internal:8443"  # any endpoint can be overridden
    assert tc.endpoint("dcs") == REFERENCE_ENDPOINTS[(cloud, region)][0]


@pytest.mark.parametrize(
    ("cloud", "region"),
    [
        ("huaweicloud", "ap-southeast-1"),
        ("huaweicloud-eu", "eu-west-101"),
        ("opentelekomcloud", "eu-de"),
    ],
)
def test_each_cloud_is_reached_by_its_hostnames_through_a_proxy_with_a_private_ca(
    tmp_path: Path, cloud: str, region: str
) -> None:
    """No endpoint is configured: the exporter derives the cloud's hostnames, resolves the
    project through IAM, and reaches all three over HTTPS through the proxy, trusting the
    simulator's certificate only through `http.ca_file`."""
    hosts = [
        h.removeprefix("https://")
        for h in REFERENCE_ENDPOINTS.get(
            (cloud, region),
            (f"https://dcs.{region}.x", f"https://dms.{region}.x", f"https://iam.{region}.x"),
        )
    ]
    ca, cert, key = make_ca_and_server_cert(tmp_path, hosts, ["127.0.0.1"])
    world = World(seed=5, region=region)
    world.add_credentials(ACCESS_KEY, SECRET_KEY)
    dcs = world.add_instance("dcs", "redis", DEMO_PROJECT)
    kafka = world.add_instance("kafka", "events", DEMO_PROJECT)
    with Simulator(world, tls=(str(cert), str(key))) as sim:
        routes = {
            name: ("127.0.0.1", int(sim.servers[name].server_address[1]))
            for name in ("dcs", "dms", "iam")
        }
        with running_proxy(routes) as proxy:
            cfg = write(
                tmp_path / "c.yml",
                [
                    {
                        "region": region,
                        "cloud": cloud,
                        "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
                        "instances": [
                            {"service": "dcs", "id": dcs.id},
                            {"service": "kafka", "id": kafka.id},
                        ],
                    }
                ],
                http={"proxy": proxy.url, "ca_file": str(ca)},
            )
            run = run_once(cfg)
            assert run.rc == 0, run.stderr
            m = Metrics(run.stdout)
            assert ups(m) == {dcs.id: 1, kafka.id: 1}
            assert {s.labels["project_id"] for s in m.find("huaweicloud_task_up")} == {DEMO_PROJECT}
            assert set(proxy.connects) == {f"{h}:443" for h in hosts}


def test_tls_is_verified_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path, ["localhost"], ["127.0.0.1"])
    world = World(seed=5, region=REGION)
    world.add_credentials(ACCESS_KEY, SECRET_KEY)
    inst = world.add_instance("kafka", "events", PROJECT)
    with Simulator(world, tls=(str(cert), str(key))) as sim:
        target = {
            "region": REGION,
            "project_id": PROJECT,
            "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
            "endpoints": {"dcs": sim.dcs_url, "dms": sim.dms_url},
            "instances": [{"service": "kafka", "id": inst.id}],
        }
        run = run_once(write(tmp_path / "a.yml", [target]))
        assert run.rc == 1
        assert (
            "CERTIFICATE_VERIFY_FAILED" in run.stderr or "certificate verify failed" in run.stderr
        )
        run = run_once(write(tmp_path / "b.yml", [target], http={"ca_file": str(ca)}))
        assert run.rc == 0, run.stderr
        run = run_once(write(tmp_path / "c.yml", [target], http={"tls_verify": False}))
        assert run.rc == 0, run.stderr
        assert "TLS verification is off" in run.stderr


# -- credential sources ----------------------------------------------------------------------


def test_environment_credentials_with_a_security_token(sim: Sim, tmp_path: Path) -> None:
    sim.world.add_credentials(
        "TEMPAK00000000000001", "temp-secret-value", security_token="temp-session-token-value"
    )
    inst = sim.world.add_instance("rabbitmq", "orders", PROJECT)
    cfg = write(
        tmp_path / "c.yml",
        [
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": endpoints(sim),
                "instances": [{"service": "rabbitmq", "id": inst.id}],
            }
        ],
    )  # no credentials in the file
    run = run_cli(
        f"--config.file={cfg}",
        "--once",
        env={
            "HUAWEICLOUD_SDK_AK": "TEMPAK00000000000001",
            "HUAWEICLOUD_SDK_SK": "temp-secret-value",
            "HUAWEICLOUD_SDK_SECURITY_TOKEN": "temp-session-token-value",
        },
    )
    assert run.rc == 0, run.stderr
    assert ups(Metrics(run.stdout)) == {inst.id: 1}
    assert {r.access_key for r in sim.world.requests_for(inst.id)} == {"TEMPAK00000000000001"}


def test_secret_key_file(sim: Sim, tmp_path: Path) -> None:
    (tmp_path / "sk").write_text(SECRET_KEY + "\n")
    inst = sim.world.add_instance("rocketmq", "payments", PROJECT)
    cfg = write(
        tmp_path / "c.yml",
        [
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": endpoints(sim),
                "credentials": {"access_key": ACCESS_KEY, "secret_key_file": str(tmp_path / "sk")},
                "instances": [{"service": "rocketmq", "id": inst.id}],
            }
        ],
    )
    run = run_once(cfg)
    assert run.rc == 0, run.stderr
    assert ups(Metrics(run.stdout)) == {inst.id: 1}


def _steady(proc: ExporterProcess, ids: set[str], seconds: float) -> list[Metrics]:
    """Scrape for a while; every scrape must show every target up."""
    scrapes = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = proc.scrape()
        assert ups(m) == dict.fromkeys(ids, 1.0), (ups(m), proc.lines[-10:])
        scrapes.append(m)
        time.sleep(0.3)
    return scrapes


def test_metadata_credentials_are_renewed_before_they_expire(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    w.options.temp_credential_ttl = 3.0
    w.options.metadata_token_required = True
    inst = w.add_instance("kafka", "events", PROJECT)
    cfg = write(
        tmp_path / "c.yml",
        [
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": endpoints(sim),
                "credentials": {"source": "metadata", "url": sim.server.metadata_url},
                "instances": [{"service": "kafka", "id": inst.id}],
            }
        ],
    )
    proc = exporters(cfg)
    proc.wait_for(lambda m: ups(m) == {inst.id: 1}, what="first poll with metadata keys")
    _steady(proc, {inst.id}, 10)
    requests = w.requests_for(inst.id)
    assert w.metadata_issued >= 4  # a 3 s key renewed every 2 s
    assert len({r.access_key for r in requests}) >= 4
    assert [r for r in requests if r.status != 200] == []  # no expired key ever reached the API
    assert "Traceback" not in proc.output


def test_metadata_without_an_agency_says_so(sim: Sim, tmp_path: Path) -> None:
    sim.world.options.metadata_agency = False
    inst = sim.world.add_instance("kafka", "events", PROJECT)
    cfg = write(
        tmp_path / "c.yml",
        [
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": endpoints(sim),
                "credentials": {"source": "metadata", "url": sim.server.metadata_url},
                "instances": [{"service": "kafka", "id": inst.id}],
            }
        ],
    )
    run = run_once(cfg)
    assert run.rc == 1
    assert "no agency is attached to this ECS" in run.stderr
    assert ups(Metrics(run.stdout)) == {inst.id: 0}


def test_iam_password_token_is_renewed_and_names_the_project(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    w.add_iam_user("acme", "exporter", "correct-horse-battery")
    w.options.iam_token_ttl = 3.0
    inst = w.add_instance("dcs", "redis", PROJECT)
    cfg = write(
        tmp_path / "c.yml",
        [
            {
                "region": REGION,
                "endpoints": endpoints(sim),  # no project_id: the token names it
                "credentials": {
                    "source": "password",
                    "user": "exporter",
                    "domain": "acme",
                    "password": "correct-horse-battery",
                },
                "instances": [{"service": "dcs", "id": inst.id}],
            }
        ],
    )
    proc = exporters(cfg)
    m = proc.wait_for(lambda m: ups(m) == {inst.id: 1}, what="first poll with a token")
    assert m.find("huaweicloud_task_up")[0].labels["project_id"] == PROJECT
    _steady(proc, {inst.id}, 8)
    assert w.tokens_issued >= 3
    requests = w.requests_for(inst.id)
    assert {r.access_key for r in requests} == {"token"}
    assert [r for r in requests if r.status != 200] == []
    # IAM revokes every token before its time: the next request gets a 401, the exporter
    # fetches a new token and repeats the request; no poll fails.
    w.options.iam_token_ttl = 3600.0
    issued = w.tokens_issued
    with w.lock:
        w.tokens.clear()
    _steady(proc, {inst.id}, 3)
    assert w.tokens_issued == issued + 1
    assert [r.status for r in w.requests_for(inst.id) if r.status != 200] == [401]


def test_credential_problems_down_only_their_targets(sim: Sim, tmp_path: Path) -> None:
    w = sim.world
    w.add_iam_user("acme", "exporter", "correct-horse-battery")
    w.add_project("eu-west-101", "p2000000000000000000000000000002")
    good = w.add_instance("kafka", "good", PROJECT)
    bad = w.add_instance("kafka", "bad-password", PROJECT)
    wrong = {
        "source": "password",
        "user": "exporter",
        "domain": "acme",
        "password": "wrong-password-value",
    }
    cfg = write(
        tmp_path / "c.yml",
        [
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": endpoints(sim),
                "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
                "instances": [{"service": "kafka", "id": good.id}],
            },
            {
                "region": REGION,
                "project_id": PROJECT,
                "endpoints": endpoints(sim),
                "credentials": wrong,
                "instances": [{"service": "kafka", "id": bad.id}],
            },
            {
                "region": "eu-west-101",
                "endpoints": endpoints(sim),
                "credentials": wrong,
                "instances": [{"service": "dcs", "id": "unreachable-without-a-project"}],
            },
        ],
    )
    run = run_once(cfg)
    assert run.rc == 1
    m = Metrics(run.stdout)
    assert ups(m) == {good.id: 1, bad.id: 0}
    assert (
        m.value(
            "huaweicloud_task_discovery_up",
            region="eu-west-101",
            project_id="",
            cloud_service="dcs",
        )
        == 0
    )
    assert "IAM refused the password of user exporter in domain acme" in run.stderr
    assert "cannot resolve the project ID" in run.stderr
    assert "wrong-password-value" not in run.stderr + run.stdout


def test_project_id_resolved_through_iam_once(sim: Sim, tmp_path: Path, exporters: Start) -> None:
    inst = sim.world.add_instance("rabbitmq", "orders", PROJECT)
    cfg = write(
        tmp_path / "c.yml",
        [
            {
                "region": REGION,
                "endpoints": endpoints(sim),
                "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
                "instances": [{"service": "rabbitmq", "id": inst.id}],
            }
        ],
    )
    proc = exporters(cfg)
    proc.wait_for(lambda m: len(sim.world.requests_for(inst.id)) >= 3, what="three polls")
    m = proc.scrape()
    assert m.find("huaweicloud_task_up")[0].labels["project_id"] == PROJECT
    lookups = [r for r in sim.world.requests if r.listener == "iam"]
    assert [(r.path, r.query) for r in lookups] == [("/v3/projects", {"name": REGION})]


# -- discovery -------------------------------------------------------------------------------


@pytest.mark.slow
def test_discovery_pages_filters_and_follows_changes_across_two_targets(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    p2 = "p2000000000000000000000000000002"
    w.add_project("eu-west-101", p2)
    w.add_credentials("SECONDACCOUNTAK00001", "second-account-secret")
    expected: set[str] = set()
    for i in range(48):  # more than one DMS page of 50 once all are counted
        expected.add(w.add_instance("kafka", f"prod-k-{i:02d}", PROJECT, tags={"env": "prod"}).id)
    excluded = [
        w.add_instance("kafka", "prod-k-temp", PROJECT, tags={"env": "prod", "temp": "true"}),
        w.add_instance("kafka", "prod-k-new", PROJECT, tags={"env": "prod"}, status="CREATING"),
        w.add_instance("kafka", "dev-k", PROJECT, tags={"env": "prod"}),
        w.add_instance("kafka", "prod-k-staging", PROJECT, tags={"env": "staging"}),
        w.add_instance("rabbitmq", "prod-mq", PROJECT, tags={"env": "prod"}),  # not discovered
    ]
    redis = [w.add_instance("dcs", f"prod-r-{i}", PROJECT, tags={"env": "prod"}) for i in range(3)]
    expected |= {r.id for r in redis}
    second = [w.add_instance("rabbitmq", "orders", p2), w.add_instance("rocketmq", "payments", p2)]
    expected |= {i.id for i in second}
    dying = w.add_task(redis[2].id, "DeleteInstance", "EXECUTING", time.time() - 5)
    cfg = write(
        tmp_path / "c.yml",
        [
            {
                "region": REGION,
                "endpoints": endpoints(sim),
                "task_center": True,
                "credentials": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
                "discover": {
                    "services": ["dcs", "kafka"],
                    "interval": "2s",
                    "name_regex": "^prod-",
                    "statuses": ["running"],
                    "tags": {"env": "prod"},
                    "exclude_tags": {"temp": "true"},
                },
            },
            {
                "region": "eu-west-101",
                "endpoints": endpoints(sim),
                "credentials": {
                    "access_key": "SECONDACCOUNTAK00001",
                    "secret_key": "second-account-secret",
                },
                "discover": {"services": ["rabbitmq", "rocketmq"], "interval": "2s"},
            },
        ],
        poll_interval="2s",
    )
    proc = exporters(cfg)
    center = f"center:{PROJECT}"
    m = proc.wait_for(
        lambda m: set(ups(m)) == expected | {center} and all(ups(m).values()),
        timeout=30,
        what="every discovered instance polled",
    )
    assert not {e.id for e in excluded} & set(ups(m))
    # Names come from discovery; instance_info carries engine, version and status.
    info = {s.labels["instance_id"]: s.labels for s in m.find("huaweicloud_task_instance_info")}
    assert set(info) == expected
    assert info[second[0].id]["instance_name"] == "orders"
    assert info[second[0].id]["engine"] == "rabbitmq"
    assert info[second[0].id]["engine_version"] == "3.8.35"
    assert info[redis[0].id]["instance_status"] == "RUNNING"
    assert {
        s.labels["region"] for s in m.find("huaweicloud_task_up", instance_id=second[1].id)
    } == {"eu-west-101"}
    # The kafka listing took two pages; each target used its own credentials.
    kafka_lists = [
        r
        for r in w.requests
        if r.path == f"/v2/{PROJECT}/instances" and r.query.get("engine") == "kafka"
    ]
    assert {r.query["offset"] for r in kafka_lists} >= {"0", "50"}
    assert {r.access_key for r in w.requests if f"/v2/{p2}/" in r.path} == {"SECONDACCOUNTAK00001"}
    assert {r.access_key for r in w.requests if f"/v2/{PROJECT}/" in r.path} == {ACCESS_KEY}

    # While running: one instance appears, two are deleted (one per target).
    added = w.add_instance("kafka", "prod-k-late", PROJECT, tags={"env": "prod"})
    w.set_status(dying.id, "SUCCESS")
    w.remove_instance(redis[2].id)
    w.remove_instance(second[0].id)
    now_expected = (expected | {added.id}) - {redis[2].id, second[0].id}
    m = proc.wait_for(
        lambda m: set(ups(m)) == now_expected | {center},
        timeout=20,
        what="discovery following the changes",
    )
    gone = {redis[2].id, second[0].id}
    assert not [s for s in m.samples if s.labels.get("instance_id") in gone]
    # The task center still shows the deleted instance's last task.
    assert (
        m.value(
            "huaweicloud_task_recent_tasks",
            instance_id="",
            task_name="DeleteInstance",
            status="SUCCESS",
        )
        == 1
    )
    assert all(s.value == 1 for s in m.find("huaweicloud_task_discovery_up"))
    assert len(m.find("huaweicloud_task_discovery_up")) == 4


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_secret_in_any_log_error_metric_or_page(
    sim: Sim, tmp_path: Path, exporters: Start
) -> None:
    w = sim.world
    w.options.temp_credential_ttl = 3.0
    w.options.iam_token_ttl = 3.0
    w.add_iam_user("acme", "exporter", "correct-horse-battery")
    w.add_credentials(
        "ENVKEY00000000000001", "env-secret-key-value", security_token="env-session-token-value"
    )
    (tmp_path / "sk").write_text("file-secret-key-value\n")
    w.add_credentials("FILEKEY0000000000001", "file-secret-key-value")
    kinds = ["aksk", "file", "env", "metadata", "password", "wrong"]
    insts = {k: w.add_instance("kafka", f"via-{k}", PROJECT) for k in kinds}
    creds: dict[str, Any] = {
        "aksk": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
        "file": {"access_key": "FILEKEY0000000000001", "secret_key_file": str(tmp_path / "sk")},
        "env": None,
        "metadata": {"source": "metadata", "url": sim.server.metadata_url},
        "password": {
            "source": "password",
            "user": "exporter",
            "domain": "acme",
            "password": "correct-horse-battery",
        },
        "wrong": {
            "source": "password",
            "user": "exporter",
            "domain": "acme",
            "password": "wrong-password-value",
        },
    }
    targets = []
    for kind in kinds:
        t: dict[str, Any] = {
            "region": REGION,
            "project_id": PROJECT,
            "endpoints": endpoints(sim),
            "instances": [{"service": "kafka", "id": insts[kind].id}],
        }
        if creds[kind] is not None:
            t["credentials"] = creds[kind]
        targets.append(t)
    cfg = write(tmp_path / "c.yml", targets)
    env = {
        "HUAWEICLOUD_SDK_AK": "ENVKEY00000000000001",
        "HUAWEICLOUD_SDK_SK": "env-secret-key-value",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": "env-session-token-value",
    }
    proc = exporters(cfg, "--log.level=debug", env=env)
    proc.wait_for(
        lambda m: ups(m) == {**{insts[k].id: 1 for k in kinds[:-1]}, insts["wrong"].id: 0},
        what="every target polled",
    )
    time.sleep(7)  # temporary keys and tokens renewed twice meanwhile
    served = [proc.scrape().text]
    served += [proc.get(path)[2].decode() for path in ("/", "/healthz", "/readyz")]
    served.append(proc.get("/metrics", {"Accept": "application/openmetrics-text"})[2].decode())
    proc.stop()
    once = run_cli(f"--config.file={cfg}", "--once", "--log.level=debug", env=env)
    assert once.rc == 1  # the wrong password
    checked = [once.stderr, once.stdout]
    checked.append(run_cli(f"--config.file={cfg}", "--check-config", env=env).stdout)
    everything = "\n".join([proc.output, *served, *checked])
    assert insts["password"].id in everything  # the pages were read
    assert "IAM refused the password" in everything
    secrets = {
        SECRET_KEY,
        "file-secret-key-value",
        "env-secret-key-value",
        "env-session-token-value",
        "correct-horse-battery",
        "wrong-password-value",
    }
    with w.lock:
        for sk, token, _ in w.credentials.values():
            secrets.add(sk)
            if token:
                secrets.add(token)
        secrets |= set(w.tokens)
    assert w.metadata_issued >= 2
    assert w.tokens_issued >= 2
    leaked = sorted(s for s in secrets if s in everything)
    assert leaked == []
