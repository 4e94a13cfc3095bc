"""The signer against the official SDK's Signer, and the simulator's gateway check (which the
tests run on the SDK's signer too)."""

from __future__ import annotations

import random
import string
import subprocess
import sys
from datetime import datetime, timezone
from urllib.parse import parse_qsl, quote

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest

from exporter import signing
from exporter.signing import UNSIGNED_HEADERS, AkSkAuth
from exporter.signing.prepared import PreparedSigner
from exporter.simulator import Simulator, World
from exporter.simulator.auth import SignatureCheck, exporter_check
from tests.conftest import ACCESS_KEY, PROJECT, REGION, ROOT, SECRET_KEY, Sim
from tests.sdk_verifier import sdk_check

# Pure logic and the simulator in-process: run on every supported Python.
pytestmark = pytest.mark.smoke

SPECIAL = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~é中€"


def _text(rng: random.Random, alphabet: str, lo: int, hi: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _case(rng: random.Random) -> tuple[httpx.Request, SdkRequest, BasicCredentials, AkSkAuth]:
    host = rng.choice(
        ["dcs.ap-southeast-1.myhuaweicloud.com", "dms.eu-de.otc.t-systems.com", "127.0.0.1:18080"]
    )
    segments = [
        _text(
            rng,
            string.ascii_letters
            + string.digits
            + SPECIAL.replace("/", "").replace("?", "").replace("#", ""),
            1,
            12,
        )
        for _ in range(rng.randint(1, 5))
    ]
    trailing = "/" if rng.random() < 0.2 else ""
    url = httpx.URL(f"https://{host}").copy_with(path="/" + "/".join(segments) + trailing)
    params: list[tuple[str, str | int | float | bool | None]] = [
        (
            _text(rng, string.ascii_letters + "_-.~" + SPECIAL, 1, 8),
            _text(rng, string.ascii_letters + string.digits + SPECIAL, 0, 16),
        )
        for _ in range(rng.randint(0, 6))
    ]
    headers = {
        "X-Sdk-Date": f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}00Z"
    }
    for _ in range(rng.randint(0, 3)):
        name = "X-" + _text(rng, string.ascii_letters + "-", 1, 10)
        headers[name] = _text(rng, string.ascii_letters + string.digits + " ,;=/", 0, 20)
    if rng.random() < 0.3:
        headers["X_Underscored"] = "not signed"
    method, body = "GET", b""
    if rng.random() < 0.25:
        method = rng.choice(["POST", "PUT"])
        body = ('{"k": "' + _text(rng, string.ascii_letters, 0, 30) + '"}').encode()
        headers["Content-Type"] = "application/json"
    token = _text(rng, string.ascii_letters + string.digits, 20, 60) if rng.random() < 0.4 else None
    project = PROJECT if rng.random() < 0.3 else None
    ak = _text(rng, string.ascii_uppercase + string.digits, 20, 20)
    sk = _text(rng, string.ascii_letters + string.digits, 40, 40)

    request = httpx.Request(
        method, url, params=httpx.QueryParams(params), headers=headers, content=body or None
    )
    auth = AkSkAuth(ak, sk, security_token=token, project_id=project)

    sdk_headers = {k: v for k, v in request.headers.items() if k.lower() not in UNSIGNED_HEADERS}
    if project:
        sdk_headers["X-Project-Id"] = project
    sdk_request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=request.url.raw_path.decode("ascii").split("?")[0],
        query_params=list(params),
        header_params=sdk_headers,
        body=body or None,
    )
    creds = BasicCredentials(ak, sk)
    if token:
        creds = creds.with_security_token(token)
    return request, sdk_request, creds, auth


def test_authorization_header_is_byte_identical_to_the_sdk_signer() -> None:
    rng = random.Random(20261123)
    compared = 0
    for _ in range(400):
        request, sdk_request, creds, auth = _case(rng)
        auth.sign(request)
        creds.sign_request(sdk_request)
        assert request.headers["Authorization"] == sdk_request.header_params["Authorization"], (
            request.method,
            str(request.url),
        )
        # The query that goes on the wire is the canonical one the SDK sends.
        sdk_query = sdk_request.uri.split("?", 1)[1] if "?" in sdk_request.uri else ""
        assert request.url.query.decode("ascii") == sdk_query
        compared += 1
    assert compared == 400


def test_prepared_signature_is_byte_identical_to_the_sdk_signer() -> None:
    """What a poll signs (the fixed parts prepared once, the query and date filled in)."""
    rng = random.Random(20261201)
    compared = 0
    while compared < 300:
        request, sdk_request, creds, auth = _case(rng)
        if request.method != "GET":
            continue
        date = request.headers["X-Sdk-Date"]
        when = datetime.strptime(date, signing.DATE_FORMAT).replace(tzinfo=timezone.utc)

        def clock(when: datetime = when) -> datetime:
            return when

        auth = AkSkAuth(
            auth.access_key,
            creds.sk,
            security_token=creds.security_token,
            project_id=auth._project_id,
            clock=clock,
        )
        extra = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "x-sdk-date")
        }
        prepared = PreparedSigner(auth, "GET", request.url.netloc.decode(), request.url.path, extra)
        params = parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
        sent_date, authorization = prepared.sign(signing.canonical_query(params))
        creds.sign_request(sdk_request)
        assert sent_date == date
        assert authorization == sdk_request.header_params["Authorization"], str(request.url)
        compared += 1


def test_security_token_is_sent_and_signed() -> None:
    request = httpx.Request(
        "GET",
        "https://dcs.ap-southeast-1.myhuaweicloud.com/v2/p/tasks",
        headers={"X-Sdk-Date": "20261123T080000Z"},
    )
    AkSkAuth("AK", "SK", security_token="TOKEN123").sign(request)
    assert request.headers["X-Security-Token"] == "TOKEN123"
    assert "x-security-token" in request.headers["Authorization"].split("SignedHeaders=")[1]


def test_repr_never_shows_the_secret() -> None:
    auth = AkSkAuth("AKID", "very-secret-value", security_token="tok-secret-value")
    assert "very-secret" not in repr(auth)
    assert "tok-secret" not in repr(auth)


@pytest.mark.parametrize(("secret", "expected"), [(SECRET_KEY, 200), ("wrong-key", 401)])
def test_simulator_checks_signatures_like_the_gateway(sim: Sim, secret: str, expected: int) -> None:
    inst = sim.world.add_instance("dcs", "r1", PROJECT)
    with httpx.Client() as client:
        resp = client.get(
            f"{sim.dcs_url}/v2/{PROJECT}/instances/{inst.id}/tasks",
            params={"offset": 0, "limit": 10, "start_time": "20260101000000"},
            auth=AkSkAuth(ACCESS_KEY, secret),
        )
    assert resp.status_code == expected
    if expected == 401:
        assert resp.json()["error_code"] == "APIG.0301"
    else:
        assert resp.json() == {"task_count": "0", "tasks": []}


def test_simulator_requires_the_security_token_of_temporary_keys(sim: Sim) -> None:
    sim.world.add_credentials("TEMPAK", "TEMPSK", security_token="session-token-1")
    inst = sim.world.add_instance("kafka", "k1", PROJECT)
    url = f"{sim.dms_url}/v2/{PROJECT}/instances/{inst.id}/tasks"
    with httpx.Client() as client:
        good = client.get(url, auth=AkSkAuth("TEMPAK", "TEMPSK", "session-token-1"))
        bad = client.get(url, auth=AkSkAuth("TEMPAK", "TEMPSK", "other-token"))
        none = client.get(url, auth=AkSkAuth("TEMPAK", "TEMPSK"))
    assert good.status_code == 200
    assert bad.status_code == 401
    assert none.status_code == 401


def test_every_test_simulator_checks_signatures_with_the_sdk(sim: Sim) -> None:
    assert sim.server.signature_check is sdk_check
    with Simulator(World(seed=1)) as other:
        assert other.signature_check is sdk_check
        assert all(s.signature_check is sdk_check for s in other.servers.values())


def test_shipped_simulator_checks_with_the_exporter_code_and_never_imports_the_sdk() -> None:
    code = (
        "import sys\n"
        "import exporter.cli, exporter.demo, exporter.simulator.__main__\n"
        "from exporter.simulator import Simulator\n"
        "from exporter.simulator.auth import exporter_check\n"
        "assert Simulator.default_signature_check is exporter_check\n"
        "assert not [m for m in sys.modules if m.startswith('huaweicloudsdk')], sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("check", "expected"), [(exporter_check, 200), (sdk_check, 401)])
def test_sdk_check_catches_a_bug_shared_by_the_signer_and_the_exporter_check(
    monkeypatch: pytest.MonkeyPatch, check: SignatureCheck, expected: int
) -> None:
    """A signer leaving `!` unescaped in the canonical query (RFC 3986 reserves it): the
    exporter-based check shares the bug and accepts; the SDK's signer refuses."""
    monkeypatch.setattr(signing, "_encode", lambda text: quote(text, safe="~!"))
    world = World(seed=3, region=REGION)
    world.add_credentials(ACCESS_KEY, SECRET_KEY)
    inst = world.add_instance("dcs", "r1", PROJECT)
    with Simulator(world, signature_check=check) as server, httpx.Client() as client:
        resp = client.get(
            f"{server.dcs_url}/v2/{PROJECT}/instances/{inst.id}/tasks",
            params={"offset": 0, "limit": 10, "start_time": "20260101000000", "x": "a!b"},
            auth=AkSkAuth(ACCESS_KEY, SECRET_KEY),
        )
    assert "x=a!b" in str(resp.request.url)
    assert resp.status_code == expected
