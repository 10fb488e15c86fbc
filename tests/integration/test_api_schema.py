"""Schemathesis against the running web app's OpenAPI document: generated requests, no 500s, answers as documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from rdnsgate.checks.names import parse_ip
from tests.harness.knot import KnotServer
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess
from tests.harness.web import web_process, web_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, knot: KnotServer, stores: Stores) -> Iterator[GatewayProcess]:
    extra = "check_rate = 100000.0\ncheck_burst = 100000\n[checks]\ndeadline = 5.0\n"
    workdir = tmp_path_factory.mktemp("api")
    process = web_process(workdir, web_settings(knot.nameserver, extra, store=stores.url(workdir)))
    process.start()
    yield process
    process.stop()


def test_api_never_fails_and_answers_as_documented(api: GatewayProcess) -> None:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{api.web_port}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations() if result.ok().path == "/api/v1/check"]
    assert [(op.method.upper(), op.path) for op in operations] == [("GET", "/api/v1/check")]
    seen: dict[int, int] = {}
    for operation in operations:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), address=st.none() | st.ip_addresses())
        def run(case: Any, address: Any) -> None:
            if address is not None and case.query and "ip" in case.query:
                case.query["ip"] = str(address)  # random strings are rarely IP addresses: half the time, one is
            response = case.call(timeout=30)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (response.status_code, response.text[:500])
            # The schema says "a string"; which strings are IP addresses is checked here instead.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            if response.status_code == 400:
                with pytest.raises(ValueError):
                    parse_ip(case.query["ip"].strip())
                assert "is not an IP address" in response.json()["detail"]
            if response.status_code == 200:
                body = response.json()
                assert body["schema"] == 1 and body["verdict"] in ("pass", "fail", "temperror")

        run()
    assert seen.get(200) and (seen.get(400) or seen.get(422)), seen  # both valid and invalid input were tried
    assert "Traceback" not in api.log()


MANAGEMENT = {
    ("GET", "/api/v1/whitelist"),
    ("POST", "/api/v1/whitelist"),
    ("DELETE", "/api/v1/whitelist"),
    ("DELETE", "/api/v1/whitelist/{entry_id}"),
    ("GET", "/api/v1/fleet"),
    ("POST", "/api/v1/fleet"),
    ("DELETE", "/api/v1/fleet/{ip}"),
    ("GET", "/api/v1/decisions"),
}


def token(api: GatewayProcess, name: str, role: str) -> str:
    made = api.run("admin", "token", "create", "--name", name, "--role", role)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_management_api_with_a_token_never_fails_and_answers_as_documented(api: GatewayProcess) -> None:
    bearer = {"Authorization": f"Bearer {token(api, 'schemathesis', 'admin')}"}
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{api.web_port}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations() if result.ok().path != "/api/v1/check"]
    assert {(op.method.upper(), op.path) for op in operations} == MANAGEMENT
    document = schema.raw_schema
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    seen: dict[tuple[str, int], int] = {}
    for operation in operations:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(headers=bearer, timeout=30)
            key = (case.operation.method.upper() + " " + case.operation.path, response.status_code)
            seen[key] = seen.get(key, 0) + 1
            assert response.status_code < 500, (response.status_code, response.text[:500])
            assert response.status_code not in (401, 403), response.text[:300]  # the token is an admin's
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

        run()
    statuses = {status for (_op, status) in seen}
    assert statuses & {200, 201, 204} and statuses & {400, 404, 422}, seen
    assert "Traceback" not in api.log()
