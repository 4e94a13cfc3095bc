"""The simulated cloud around the task APIs: IAM tokens and projects, the ECS metadata service,
list-instances on DCS and DMS, and TLS. Over real HTTP with httpx.

Expiry is tested with the world's clock moved forward, not by sleeping: the world reads time
through `World.clock`, and a few seconds of skew stay well inside the signature's window.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.signing import AkSkAuth
from exporter.simulator import Simulator, World
from exporter.simulator.world import Fault
from tests.certs import make_ca_and_server_cert

pytestmark = pytest.mark.smoke  # in-process: run on every supported Python

ACCESS_KEY = "CLOUDTESTAK000000001"
SECRET_KEY = "cloud-test-secret-6a5b4c3d2e1f"
PROJECT = "0f5c1a2b3c4d4e5f8a9b0c1d2e3f4a5b"
REGION = "ap-southeast-1"
OTHER_REGION = "eu-west-101"
OTHER_PROJECT = "9e8d7c6b5a4f4e3d2c1b0a9f8e7d6c5b"
DOMAIN, USER, PASSWORD = "acme", "ops-reader", "s3cret-Passw0rd"
EXPIRY_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Cloud:
    def __init__(self, world: World, sim: Simulator, clock: Clock) -> None:
        self.world = world
        self.sim = sim
        self.clock = clock
        self.http = httpx.Client(timeout=5)
        self.signed = AkSkAuth(ACCESS_KEY, SECRET_KEY)

    def close(self) -> None:
        self.http.close()

    def get_token(self, **scope: str) -> httpx.Response:
        return self.http.post(f"{self.sim.iam_url}/v3/auth/tokens", json=token_request(**scope))

    def token(self, project_id: str = PROJECT) -> str:
        resp = self.get_token(project_id=project_id)
        assert resp.status_code == 201, resp.text
        return resp.headers["X-Subject-Token"]

    def list_dcs(self, project_id: str = PROJECT, **params: Any) -> httpx.Response:
        url = f"{self.sim.dcs_url}/v2/{project_id}/instances"
        return self.http.get(url, params=params, auth=self.signed)

    def list_dms(self, project_id: str = PROJECT, **params: Any) -> httpx.Response:
        url = f"{self.sim.dms_url}/v2/{project_id}/instances"
        return self.http.get(url, params=params, auth=self.signed)


def make_world(clock: Clock | None = None) -> World:
    world = World(seed=11, clock=clock or time.time, region=REGION)
    world.add_credentials(ACCESS_KEY, SECRET_KEY)
    world.add_iam_user(DOMAIN, USER, PASSWORD)
    world.add_project(OTHER_REGION, OTHER_PROJECT)
    return world


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    clock = Clock()
    world = make_world(clock)
    sim = Simulator(world).start()
    c = Cloud(world, sim, clock)
    try:
        yield c
    finally:
        c.close()
        sim.stop()


def token_request(
    user: str = USER,
    password: str = PASSWORD,
    domain: str = DOMAIN,
    project_id: str | None = None,
    project_name: str | None = None,
    project_domain: str | None = None,
) -> dict[str, Any]:
    project: dict[str, Any] = {}
    if project_id is not None:
        project["id"] = project_id
    if project_name is not None:
        project["name"] = project_name
    if project_domain is not None:
        project["domain"] = {"name": project_domain}
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "password": password, "domain": {"name": domain}}
                },
            },
            "scope": {"project": project},
        }
    }


def parse_expiry(text: str) -> float:
    return datetime.strptime(text, EXPIRY_FORMAT).replace(tzinfo=timezone.utc).timestamp()


def error_code(resp: httpx.Response) -> str:
    code = resp.json()["error_code"]
    assert isinstance(code, str)
    return code


# -- IAM ---------------------------------------------------------------------------------------


def test_iam_token_by_project_id_and_by_name(cloud: Cloud) -> None:
    before = cloud.clock()
    resp = cloud.get_token(project_id=PROJECT)
    assert resp.status_code == 201, resp.text
    token = resp.headers["X-Subject-Token"]
    assert len(token) > 40
    body = resp.json()["token"]
    assert body["methods"] == ["password"]
    assert body["project"]["id"] == PROJECT
    assert body["project"]["name"] == REGION
    assert body["project"]["domain"]["name"] == DOMAIN
    assert body["user"]["name"] == USER
    assert body["user"]["domain"]["name"] == DOMAIN
    assert abs(parse_expiry(body["expires_at"]) - (before + 86400)) < 5
    parse_expiry(body["issued_at"])

    # The token authenticates the task and list APIs of its project, on both gateways.
    headers = {"X-Auth-Token": token}
    inst = cloud.world.add_instance("kafka", "events", PROJECT)
    listed = cloud.http.get(f"{cloud.sim.dcs_url}/v2/{PROJECT}/instances", headers=headers)
    assert listed.status_code == 200, listed.text
    tasks = cloud.http.get(
        f"{cloud.sim.dms_url}/v2/{PROJECT}/instances/{inst.id}/tasks", headers=headers
    )
    assert tasks.status_code == 200, tasks.text
    recorded = [r for r in cloud.world.requests if r.listener in ("dcs", "dms")]
    assert [r.access_key for r in recorded] == ["token", "token"]

    by_name = cloud.get_token(project_name=OTHER_REGION, project_domain=DOMAIN)
    assert by_name.status_code == 201, by_name.text
    project = by_name.json()["token"]["project"]
    assert (project["id"], project["name"]) == (OTHER_PROJECT, OTHER_REGION)
    assert by_name.headers["X-Subject-Token"] != token
    assert cloud.world.tokens_issued == 2
    iam = [r for r in cloud.world.requests if r.listener == "iam"]
    assert [(r.method, r.status, r.access_key) for r in iam] == [("POST", 201, None)] * 2


@pytest.mark.parametrize(
    ("scope", "status", "code"),
    [
        ({"password": "wrong"}, 401, "IAM.0004"),
        ({"user": "someone-else"}, 401, "IAM.0004"),
        ({"domain": "other-domain"}, 401, "IAM.0004"),
        ({"project_id": "00000000000000000000000000000000"}, 400, "IAM.0005"),
        ({"project_name": "xx-nowhere-1"}, 400, "IAM.0005"),
    ],
)
def test_iam_token_refusals(cloud: Cloud, scope: dict[str, str], status: int, code: str) -> None:
    kwargs = dict(scope)
    if "project_name" not in kwargs:
        kwargs.setdefault("project_id", PROJECT)
    resp = cloud.get_token(**kwargs)
    assert resp.status_code == status, resp.text
    assert resp.json()["error_code"] == code
    assert "X-Subject-Token" not in resp.headers
    assert cloud.world.tokens_issued == 0


def test_iam_wrong_password_message(cloud: Cloud) -> None:
    resp = cloud.get_token(project_id=PROJECT, password="nope")
    assert resp.json() == {
        "error_msg": "The username or password is wrong.",
        "error_code": "IAM.0004",
    }


def test_iam_malformed_token_request(cloud: Cloud) -> None:
    url = f"{cloud.sim.iam_url}/v3/auth/tokens"
    assert cloud.http.post(url, content=b"{not json").status_code == 400
    assert cloud.http.post(url, json={"auth": {}}).status_code == 400
    unscoped = token_request()
    del unscoped["auth"]["scope"]
    assert cloud.http.post(url, json=unscoped).status_code == 400


def test_iam_token_expires(cloud: Cloud) -> None:
    cloud.world.options.iam_token_ttl = 1.0
    token = cloud.token()
    url = f"{cloud.sim.dcs_url}/v2/{PROJECT}/instances"
    assert cloud.http.get(url, headers={"X-Auth-Token": token}).status_code == 200
    cloud.clock.advance(2)
    resp = cloud.http.get(url, headers={"X-Auth-Token": token})
    assert resp.status_code == 401
    assert resp.json()["error_code"] == "APIG.0307"
    assert resp.json()["error_msg"] == "The token must be updated."
    unknown = cloud.http.get(url, headers={"X-Auth-Token": "not-a-token"})
    assert unknown.status_code == 401
    assert error_code(unknown) == "APIG.0307"


def test_token_scoped_to_another_project_is_forbidden(cloud: Cloud) -> None:
    token = cloud.token(OTHER_PROJECT)
    inst = cloud.world.add_instance("dcs", "r", PROJECT)
    for url in (
        f"{cloud.sim.dcs_url}/v2/{PROJECT}/instances",
        f"{cloud.sim.dcs_url}/v2/{PROJECT}/instances/{inst.id}/tasks",
        f"{cloud.sim.dcs_url}/v2/{PROJECT}/tasks",
        f"{cloud.sim.dms_url}/v2/{PROJECT}/instances?engine=kafka",
    ):
        resp = cloud.http.get(url, headers={"X-Auth-Token": token})
        assert resp.status_code == 403, url
        assert resp.json()["error_code"] == "APIG.0302"
    own = cloud.http.get(
        f"{cloud.sim.dcs_url}/v2/{OTHER_PROJECT}/instances", headers={"X-Auth-Token": token}
    )
    assert own.status_code == 200


def test_projects_lookup_with_aksk_and_with_token(cloud: Cloud) -> None:
    url = f"{cloud.sim.iam_url}/v3/projects"
    resp = cloud.http.get(url, params={"name": REGION}, auth=cloud.signed)
    assert resp.status_code == 200, resp.text
    projects = resp.json()["projects"]
    assert [(p["id"], p["name"], p["enabled"]) for p in projects] == [(PROJECT, REGION, True)]
    assert projects[0]["domain_id"]
    assert "links" in resp.json()

    other = cloud.http.get(url, params={"name": OTHER_REGION}, auth=cloud.signed)
    assert other.json()["projects"][0]["id"] == OTHER_PROJECT
    unknown = cloud.http.get(url, params={"name": "xx-nowhere-1"}, auth=cloud.signed)
    assert unknown.status_code == 200
    assert unknown.json()["projects"] == []

    token = cloud.token()
    by_token = cloud.http.get(url, params={"name": REGION}, headers={"X-Auth-Token": token})
    assert by_token.status_code == 200
    assert by_token.json()["projects"][0]["id"] == PROJECT

    unsigned = cloud.http.get(url, params={"name": REGION})
    assert unsigned.status_code == 401
    assert error_code(unsigned).startswith("APIG.03")
    recorded = [
        (r.method, r.path, r.status, r.access_key)
        for r in cloud.world.requests
        if r.listener == "iam"
    ]
    assert ("GET", "/v3/projects", 200, ACCESS_KEY) in recorded
    assert ("GET", "/v3/projects", 200, "token") in recorded


def test_admin_api_adds_users_projects_and_instances(cloud: Cloud) -> None:
    admin = cloud.sim.iam_url + "/_sim"
    assert (
        cloud.http.post(
            f"{admin}/iam/users", json={"domain": "d2", "user": "u2", "password": "p2"}
        ).status_code
        == 200
    )
    assert (
        cloud.http.post(
            f"{admin}/projects", json={"name": "la-south-2", "id": "1" * 32}
        ).status_code
        == 200
    )
    resp = cloud.get_token(user="u2", password="p2", domain="d2", project_name="la-south-2")
    assert resp.status_code == 201, resp.text
    assert resp.json()["token"]["project"]["id"] == "1" * 32

    created = cloud.http.post(
        f"{cloud.sim.metadata_url}/_sim/instances",
        json={"service": "dcs", "name": "tagged", "status": "CREATING", "tags": {"env": "prod"}},
    ).json()
    assert created["status"] == "CREATING"
    assert created["engine_version"] == "6.0"
    assert (
        cloud.http.post(
            f"{cloud.sim.dcs_url}/_sim/instances/{created['id']}", json={"status": "RUNNING"}
        ).status_code
        == 200
    )
    listed = cloud.list_dcs().json()["instances"]
    assert listed == [
        {
            "instance_id": created["id"],
            "name": "tagged",
            "engine": "Redis",
            "engine_version": "6.0",
            "status": "RUNNING",
            "tags": [{"key": "env", "value": "prod"}],
        }
    ]


# -- ECS metadata ------------------------------------------------------------------------------


def securitykey(cloud: Cloud, token: str | None = None) -> httpx.Response:
    headers = {} if token is None else {"X-Metadata-Token": token}
    return cloud.http.get(f"{cloud.sim.metadata_url}/openstack/latest/securitykey", headers=headers)


def metadata_token(cloud: Cloud, ttl: str = "21600") -> httpx.Response:
    return cloud.http.put(
        f"{cloud.sim.metadata_url}/meta-data/latest/api/token",
        headers={"X-Metadata-Token-Ttl-Seconds": ttl},
    )


def test_metadata_token_step_then_temporary_credentials_that_work(cloud: Cloud) -> None:
    assert cloud.sim.metadata_url.startswith("http://")
    put = metadata_token(cloud)
    assert put.status_code == 200
    token = put.text
    assert token
    before = cloud.clock()
    resp = securitykey(cloud, token)
    assert resp.status_code == 200, resp.text
    cred = resp.json()["credential"]
    assert set(cred) == {"access", "secret", "securitytoken", "expires_at"}
    assert abs(parse_expiry(cred["expires_at"]) - (before + 3600)) < 5
    assert cloud.world.metadata_issued == 1

    auth = AkSkAuth(cred["access"], cred["secret"], cred["securitytoken"])
    listed = cloud.http.get(f"{cloud.sim.dms_url}/v2/{PROJECT}/instances", auth=auth)
    assert listed.status_code == 200, listed.text
    projects = cloud.http.get(
        f"{cloud.sim.iam_url}/v3/projects", params={"name": REGION}, auth=auth
    )
    assert projects.status_code == 200, projects.text
    # Without its security token, a temporary key is refused.
    bare = AkSkAuth(cred["access"], cred["secret"])
    refused = cloud.http.get(f"{cloud.sim.dms_url}/v2/{PROJECT}/instances", auth=bare)
    assert refused.status_code == 401

    again = securitykey(cloud, token).json()["credential"]
    assert again["access"] != cred["access"]
    assert again["secret"] != cred["secret"]
    assert again["securitytoken"] != cred["securitytoken"]
    assert cloud.world.metadata_issued == 2
    meta = [r for r in cloud.world.requests if r.listener == "metadata"]
    assert [(r.method, r.status, r.access_key) for r in meta] == [
        ("PUT", 200, None),
        ("GET", 200, None),
        ("GET", 200, None),
    ]


def test_metadata_token_ttl_must_be_in_range(cloud: Cloud) -> None:
    for ttl in ("0", "21601", "soon"):
        assert metadata_token(cloud, ttl).status_code == 400
    assert metadata_token(cloud, "1").status_code == 200


def test_metadata_without_token_support(cloud: Cloud) -> None:
    cloud.world.options.metadata_token_supported = False
    assert metadata_token(cloud).status_code == 404
    resp = securitykey(cloud)
    assert resp.status_code == 200
    assert resp.json()["credential"]["access"]


def test_metadata_token_required(cloud: Cloud) -> None:
    cloud.world.options.metadata_token_required = True
    assert securitykey(cloud).status_code == 401
    assert securitykey(cloud, "made-up").status_code == 401
    token = metadata_token(cloud, "60").text
    assert securitykey(cloud, token).status_code == 200
    cloud.clock.advance(61)
    assert securitykey(cloud, token).status_code == 401
    assert cloud.world.metadata_issued == 1


def test_metadata_without_agency(cloud: Cloud) -> None:
    cloud.world.options.metadata_agency = False
    resp = securitykey(cloud)
    assert resp.status_code == 401
    assert "Cloud Service Agency" in resp.json()["error"]["message"]
    assert cloud.world.metadata_issued == 0


def test_temporary_credentials_expire(cloud: Cloud) -> None:
    cloud.world.options.temp_credential_ttl = 1.0
    cred = securitykey(cloud).json()["credential"]
    auth = AkSkAuth(cred["access"], cred["secret"], cred["securitytoken"])
    url = f"{cloud.sim.dcs_url}/v2/{PROJECT}/instances"
    assert cloud.http.get(url, auth=auth).status_code == 200
    cloud.clock.advance(2)
    resp = cloud.http.get(url, auth=auth)
    assert resp.status_code == 401
    assert resp.json()["error_code"] == "APIG.0301"
    assert "security token has expired" in resp.json()["error_msg"]
    # Long-term keys never expire.
    assert cloud.list_dcs().status_code == 200
    # A fresh pair works again.
    fresh = securitykey(cloud).json()["credential"]
    fresh_auth = AkSkAuth(fresh["access"], fresh["secret"], fresh["securitytoken"])
    assert cloud.http.get(url, auth=fresh_auth).status_code == 200


# -- list instances ----------------------------------------------------------------------------


def pages(cloud: Cloud, dms: bool, limit: int, **params: Any) -> tuple[list[int], list[Any]]:
    """Every page of a listing: the `instance_num` of each, and all instances in order."""
    nums: list[int] = []
    found: list[Any] = []
    offset = 0
    while True:
        call = cloud.list_dms if dms else cloud.list_dcs
        resp = call(offset=offset, limit=limit, **params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        nums.append(body["instance_num"])
        found += body["instances"]
        offset += limit
        if offset >= body["instance_num"]:
            return nums, found


def test_dcs_list_instances_over_pages(cloud: Cloud) -> None:
    world = cloud.world
    ids = [
        world.add_instance("dcs", f"redis-{i:02d}", PROJECT, tags={"n": str(i)}).id
        for i in range(23)
    ]
    world.add_instance("kafka", "not-dcs", PROJECT)
    world.add_instance("dcs", "other-project", OTHER_PROJECT)
    world.set_instance_status(ids[5], "ERROR")
    nums, found = pages(cloud, dms=False, limit=10)
    assert nums == [23, 23, 23]
    assert [i["instance_id"] for i in found] == ids
    assert {i["engine"] for i in found} == {"Redis"}
    assert found[5]["status"] == "ERROR"
    assert found[7]["tags"] == [{"key": "n", "value": "7"}]
    assert found[0]["engine_version"] == "6.0"

    default = cloud.list_dcs().json()
    assert len(default["instances"]) == 10
    past_end = cloud.list_dcs(offset=50, limit=10)
    assert past_end.status_code == 200
    assert past_end.json() == {"instance_num": 23, "instances": []}
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "ten"}):
        resp = cloud.list_dcs(**bad)
        assert resp.status_code == 400, bad
    assert cloud.list_dcs(limit=1000).status_code == 200
    world.options.dcs_list_max_limit = 20
    assert cloud.list_dcs(limit=21).status_code == 400


@pytest.mark.parametrize(
    ("engine", "service", "version"),
    [
        ("kafka", "kafka", "2.7"),
        ("rabbitmq", "rabbitmq", "3.8.35"),
        ("reliability", "rocketmq", "4.8.0"),
    ],
)
def test_dms_list_instances_over_pages(
    cloud: Cloud, engine: str, service: Any, version: str
) -> None:
    world = cloud.world
    ids = [world.add_instance(service, f"{engine}-{i}", PROJECT).id for i in range(9)]
    for other in ("kafka", "rabbitmq", "rocketmq", "dcs"):
        if other != service:
            world.add_instance(other, f"noise-{other}", PROJECT)
    world.add_instance(service, "another-project", "f" * 32)  # listed only in its project
    nums, found = pages(cloud, dms=True, limit=4, engine=engine)
    assert nums == [9, 9, 9]
    assert [i["instance_id"] for i in found] == ids
    assert {(i["engine"], i["engine_version"], i["status"]) for i in found} == {
        (engine, version, "RUNNING")
    }

    past_end = cloud.list_dms(engine=engine, offset=9, limit=4)
    assert past_end.status_code == 400
    assert past_end.json()["error_code"] == "DMS.40050010"
    assert past_end.json()["error_msg"] == "The offset is out of range."
    assert cloud.list_dms(engine=engine, limit=51).status_code == 400
    assert cloud.list_dms(engine=engine, limit=50).status_code == 200


def test_dms_list_without_engine_and_empty_project(cloud: Cloud) -> None:
    world = cloud.world
    for service in ("kafka", "rabbitmq", "rocketmq", "dcs"):
        world.add_instance(service, service, PROJECT)
    body = cloud.list_dms().json()
    assert body["instance_num"] == 3
    assert [i["engine"] for i in body["instances"]] == ["kafka", "rabbitmq", "reliability"]
    assert cloud.list_dms(engine="rocketmq").status_code == 400  # the API calls it reliability
    empty = cloud.list_dms(OTHER_PROJECT, engine="kafka")
    assert empty.status_code == 200
    assert empty.json() == {"instance_num": 0, "instances": []}


def test_instances_come_and_go(cloud: Cloud) -> None:
    world = cloud.world
    first = world.add_instance("dcs", "a", PROJECT)
    second = world.add_instance("kafka", "b", PROJECT)
    assert [i["name"] for i in cloud.list_dcs().json()["instances"]] == ["a"]
    assert [i["name"] for i in cloud.list_dms(engine="kafka").json()["instances"]] == ["b"]

    third = world.add_instance("dcs", "c", PROJECT)
    world.remove_instance(first.id)
    assert [i["instance_id"] for i in cloud.list_dcs().json()["instances"]] == [third.id]
    gone = cloud.http.get(
        f"{cloud.sim.dcs_url}/v2/{PROJECT}/instances/{first.id}/tasks", auth=cloud.signed
    )
    assert gone.status_code == 404

    world.remove_instance(second.id)
    assert cloud.list_dms(engine="kafka").json() == {"instance_num": 0, "instances": []}
    # Through the admin API too.
    added = cloud.http.post(
        f"{cloud.sim.dms_url}/_sim/instances", json={"service": "rocketmq", "name": "d"}
    ).json()
    assert [i["instance_id"] for i in cloud.list_dms().json()["instances"]] == [added["id"]]
    assert cloud.http.delete(f"{cloud.sim.dms_url}/_sim/instances/{added['id']}").is_success
    assert cloud.list_dms().json()["instance_num"] == 0


def test_faults_reach_listings_but_not_iam_unless_named(cloud: Cloud) -> None:
    world = cloud.world
    world.add_fault(Fault(kind="http_error", status=503, remaining=1))
    assert cloud.get_token(project_id=PROJECT).status_code == 201  # IAM: not named, untouched
    assert cloud.list_dcs().status_code == 503
    assert cloud.list_dcs().status_code == 200
    # Faults aimed at one instance's tasks or at the task center leave listings alone.
    world.add_fault(Fault(kind="http_error", listener="dms", instance_id="x" * 32))
    world.add_fault(Fault(kind="throttle", listener="dcs", center=True))
    assert cloud.list_dms().status_code == 200
    assert cloud.list_dcs().status_code == 200
    world.clear_faults()
    world.add_fault(Fault(kind="throttle", listener="iam", remaining=1))
    assert cloud.get_token(project_id=PROJECT).status_code == 429
    assert cloud.get_token(project_id=PROJECT).status_code == 201
    world.add_fault(Fault(kind="http_error", listener="dms", listing=False))
    assert cloud.list_dms().status_code == 200


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path, ["localhost"], ["127.0.0.1"])
    world = make_world()
    with Simulator(world, tls=(str(cert), str(key))) as sim:
        assert sim.dcs_url.startswith("https://")
        assert sim.dms_url.startswith("https://")
        assert sim.iam_url.startswith("https://")
        assert sim.metadata_url.startswith("http://")
        trusted = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(verify=trusted, timeout=5) as client:
            url = f"{sim.dcs_url}/v2/{PROJECT}/instances"
            assert client.get(url, auth=AkSkAuth(ACCESS_KEY, SECRET_KEY)).status_code == 200
            resp = client.post(
                f"{sim.iam_url}/v3/auth/tokens", json=token_request(project_id=PROJECT)
            )
            assert resp.status_code == 201
            dms = client.get(
                f"{sim.dms_url}/v2/{PROJECT}/instances",
                headers={"X-Auth-Token": resp.headers["X-Subject-Token"]},
            )
            assert dms.status_code == 200
        with httpx.Client(timeout=5) as default_trust, pytest.raises(httpx.ConnectError) as err:
            default_trust.get(f"{sim.dcs_url}/v2/{PROJECT}/instances")
        assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
        # A refused handshake does not disturb the listener.
        with httpx.Client(verify=trusted, timeout=5) as client:
            assert client.get(f"{sim.dcs_url}/_sim/state").status_code == 200
        with httpx.Client(timeout=5) as plain:
            assert plain.get(f"{sim.metadata_url}/openstack/latest/securitykey").is_success
