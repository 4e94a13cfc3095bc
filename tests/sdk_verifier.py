"""The simulator's signature check done by the official SDK's signer (test-only).

The shipped simulator recomputes signatures with `exporter.signing`, the same code that signs:
a bug in it would be shared by both sides and pass every end-to-end test. Here the expected
`Authorization` header is rebuilt by `huaweicloudsdkcore`'s `Signer` (`SDK-HMAC-SHA256`) from
what came over the wire, and must equal what the exporter sent, byte for byte.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from exporter.simulator.auth import Received


def _wire_case(name: str) -> str:
    """`content-type` -> `Content-Type`: the SDK looks some headers up by that exact case."""
    return "-".join(part.capitalize() for part in name.split("-"))


def sdk_authorization(request: Received, secret_key: str) -> str:
    """The `Authorization` header the SDK's signer computes for the received request."""
    # Imported at the first signature checked, not at every pytest worker's collection.
    from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: PLC0415
    from huaweicloudsdkcore.sdk_request import SdkRequest  # noqa: PLC0415
    from huaweicloudsdkcore.signer.signer import Signer  # noqa: PLC0415

    sdk_request = SdkRequest(
        method=request.method,
        schema="https",
        host=request.headers["host"],
        resource_path=request.raw_path,
        query_params=parse_qsl(request.raw_query, keep_blank_values=True),
        header_params={_wire_case(k): v for k, v in request.headers.items()},
        body=request.body or None,
    )
    Signer(BasicCredentials(request.access_key, secret_key)).sign(sdk_request)
    header: str = sdk_request.header_params["Authorization"]
    return header


def sdk_check(request: Received, secret_key: str) -> bool:
    """A `SignatureCheck`: the exporter's header equals the SDK's for the same request."""
    return hmac.compare_digest(sdk_authorization(request, secret_key), request.authorization)
