"""Fuzz the three APIs from their own OpenAPI documents (schemathesis), as a new user would.

Members, alerts and dispatch run as real processes on the real Kafka, PostgreSQL and
Redis (the console's `platform` fixture). Every operation of each service's `/openapi.json`
is called with requests schemathesis generates from the schema, both fitting it
(positive) and breaking it (negative: wrong types, NUL bytes, huge integers, missing
fields), as admin, coordinator and authority (tokens from members' `POST /auth/token`
for accounts this test creates), and a second time with the ids of a real member, section
and emergency in the path, so the handlers behind a 404 are reached too.

What must hold for every response:
- never a 5xx;
- a 4xx is JSON with a `detail`, and a 422's `detail` is a list of errors, each with a
  `loc` naming the field (FastAPI's shape), so a client can show it next to the field;
- the Twilio webhooks (`/sms/inbound`, `/sms/status`) answer a request without a valid
  `X-Twilio-Signature` 403, whatever its body.

The run is bounded and reproducible: a fixed seed, `EXAMPLES` per operation, mode and
role (`PUBLIC_EXAMPLES` for operations without a token, tried once), no shrinking (a
finding is reported with the request that caused it, as a curl command, and the run goes
on so one report lists everything). Findings and their fixes: docs/security.md,
"Hostile input".
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import HypothesisException
from schemathesis import Case, GenerationMode
from schemathesis.schemas import APIOperation

from shared.service import NUL_MESSAGE
from tests.console.conftest import FIER, ConsolePlatform

SEED = 20_240_610
#: examples per operation, mode (positive, negative) and path (random ids, real ids) for
#: each role: most for the admin, who may call everything; an authority is refused most
#: operations, which takes few examples to show
EXAMPLES = {"admin": 6, "coordinator": 5, "authority": 2}
#: operations anyone may call (sign-in, JWKS, webhooks, the answer page) are tried once,
#: with no token, this many times per mode
PUBLIC_EXAMPLES = 12
COORDINATOR = "fuzz.coordinator@example.org"
AUTHORITY = "fuzz.authority@example.org"

#: Operations not fuzzed, and why. Everything else in the three documents is.
EXCLUDED: dict[tuple[str, str], str] = {
    # A Server-Sent Events stream: with a real emergency it never ends, so every example
    # would wait for the request timeout; its parameters (the id, `?ticket=`) are the same
    # as the board's and the stream ticket's, which are fuzzed.
    ("GET", "/emergencies/{emergency_id}/stream"): "an endless SSE stream",
}

#: the CSV imports answer a refused file with a report per row and column (`errors`),
#: documented in docs/members.md, instead of FastAPI's `loc`
CSV_IMPORTS = {("POST", "/members/import"), ("POST", "/members/imports")}

#: Twilio's webhooks: anything without a valid signature is refused before it is read
WEBHOOKS = {("POST", "/sms/inbound"), ("POST", "/sms/status")}


@dataclass(frozen=True)
class Finding:
    service: str
    operation: str
    role: str
    mode: str
    problem: str
    curl: str

    def __str__(self) -> str:
        where = f"{self.service} {self.operation} as {self.role} ({self.mode})"
        return f"{where}: {self.problem}\n    {self.curl}"


def refusal_problem(operation: APIOperation, response: Any) -> str | None:
    """What is wrong with this response, or None: the checks the module docstring lists."""
    status = int(response.status_code)
    key = (operation.method.upper(), operation.path)
    text = response.content[:300].decode("utf-8", "replace")
    if status >= 500:
        return f"{status} {text}"
    if key in WEBHOOKS:
        # the fuzzer cannot sign, so it must never get past the signature check; only the
        # NUL guard, in front of every route, may refuse such a request first
        if status == 403 or (status == 422 and refused_for_nul(response)):
            return None
        return f"unsigned webhook answered {status}, not 403: {text}"
    if not 400 <= status < 500:
        return None
    content_type = ",".join(response.headers.get("content-type", []) or [])
    if "text/html" in content_type and html_page(operation):
        return None  # the members' answer page answers a person in HTML
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"{status} is not JSON ({content_type}): {text}"
    if not isinstance(body, dict) or "detail" not in body:
        return f"{status} without a `detail`: {text}"
    if status == 422 and key in CSV_IMPORTS and "errors" in body:
        # the import's documented report: every refused row with its line and column
        errors = body.get("errors")
        if not isinstance(errors, list) or not all(
            isinstance(e, dict) and e.get("column") and "line" in e for e in errors
        ):
            return f"422 import report without a line and column per error: {text}"
        return None
    if status == 422:
        errors = body["detail"]
        if not isinstance(errors, list) or not errors:
            return f"422 whose detail is not a list of errors naming the field: {text}"
        for error in errors:
            loc = error.get("loc") if isinstance(error, dict) else None
            if (
                not isinstance(loc, list)
                or not loc
                or not all(isinstance(part, str | int) for part in loc)
            ):
                return f"422 with an error without a `loc` naming the field: {text}"
    return None


def refused_for_nul(response: Any) -> bool:
    try:
        errors = json.loads(response.content)["detail"]
        return all(error["msg"] == NUL_MESSAGE for error in errors)
    except (ValueError, KeyError, TypeError):
        return False


def html_page(operation: APIOperation) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any("text/html" in (r.get("content") or {}) for r in responses.values())


def is_public(operation: APIOperation) -> bool:
    return not (
        operation.definition.raw.get("security") or operation.schema.raw_schema.get("security")
    )


def fuzz(
    operation: APIOperation,
    *,
    mode: GenerationMode,
    headers: dict[str, str],
    examples: int,
    path_parameters: dict[str, str] | None,
    session: requests.Session,
) -> Iterator[tuple[str, str]]:
    """Call the operation with `examples` generated requests; yield (problem, curl)."""
    found: list[tuple[str, str]] = []
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @seed(SEED)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Case) -> None:
        response = case.call(session=session, headers=headers, timeout=30)
        problem = refusal_problem(operation, response)
        if problem is not None:
            found.append((problem, case.as_curl_command(headers=headers)))

    # nothing may be generated in a mode (no negative form of a body without constraints)
    with contextlib.suppress(HypothesisException):
        run()
    yield from found


@pytest.fixture(scope="module")
def staff(platform: ConsolePlatform) -> dict[str, dict[str, str]]:
    """Bearer headers per role, for accounts this test creates in section AL."""
    api = platform.api
    api.section("AL")
    api.account(COORDINATOR, "coordinator", ["AL"])
    api.account(AUTHORITY, "authority", ["AL"])
    return {
        "admin": api.admin,
        "coordinator": api.bearer(COORDINATOR),
        "authority": api.bearer(AUTHORITY),
    }


@pytest.fixture(scope="module")
def known_ids(platform: ConsolePlatform, staff: dict[str, dict[str, str]]) -> dict[str, str]:
    """Real ids for path parameters, so the fuzzer reaches past "not found"."""
    member = platform.api.member()
    emergency = platform.api.declare(
        staff["coordinator"], area={"lat": FIER[0], "lon": FIER[1], "radius_m": 2000}
    )
    return {"member_id": member.id, "emergency_id": emergency["id"], "code": "AL"}


BIGGER_THAN_BIGINT = "123330163404272294857671721353216"
CAP_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
    "<identifier>FUZZ-1</identifier><sender>fuzz@example.org</sender>"
    "<sent>2026-11-23T10:00:00+01:00</sent><status>Exercise</status><msgType>Alert</msgType>"
    "<scope>Public</scope><info><category>Rescue</category><event>Flood</event>"
    "<urgency>Immediate</urgency><severity>Severe</severity><certainty>Observed</certainty>"
    "<parameter><valueName>muster:section</valueName><value>AL</value></parameter>"
)


def circle_alert(circle: str) -> str:
    return f"{CAP_HEAD}<area><areaDesc>x</areaDesc><circle>{circle}</circle></area></info></alert>"


def polygon_emergency(polygon: Any) -> dict[str, Any]:
    return {
        "section": "AL",
        "title": "Flooding",
        "severity": "Severe",
        "members_needed": 2,
        "area": {"polygon": polygon},
    }


#: (role, service, method, url, request keywords, the `loc` the 422 must name): what
#: schemathesis found before the fixes (issue 10, defect 14), each once more
HOSTILE_REQUESTS: list[tuple[str, str, str, str, dict[str, Any], list[Any]]] = [
    ("coordinator", "members", "GET", "/availability?lat=40.7&lon=19.5&radius_km=5"
     "&qualification=%00", {}, ["query", "qualification"]),
    ("admin", "members", "GET", "/members?offset=14586635051180437504", {}, ["query", "offset"]),
    ("admin", "members", "POST", "/qualifications",
     {"json": {"code": "WK9", "name": "\u0000x"}}, ["body", "name"]),
    ("admin", "members", "GET", "/sections/%00", {}, ["path", "code"]),
    ("coordinator", "dispatch", "GET", f"/audit?after_id={BIGGER_THAN_BIGINT}", {},
     ["query", "after_id"]),
    ("coordinator", "dispatch", "GET", "/emergencies/{emergency_id}/audit"
     f"?after_id={BIGGER_THAN_BIGINT}", {}, ["query", "after_id"]),
    ("coordinator", "dispatch", "POST", "/emergencies",
     {"json": polygon_emergency({"type": "Polygon", "coordinates": "ring"})},
     ["body", "area", "polygon"]),
    ("coordinator", "dispatch", "POST", "/emergencies",
     {"json": polygon_emergency({"type": "Polygon", "coordinates": [1, 2, 3]})},
     ["body", "area", "polygon"]),
    ("coordinator", "dispatch", "POST", "/emergencies",
     {"json": polygon_emergency({"type": "Polygon", "coordinates": [[[1, 2], "x", 3, [4]]]})},
     ["body", "area", "polygon"]),
    ("coordinator", "dispatch", "POST", "/emergencies/cap",
     {"data": circle_alert("1.2.3,19.5 2")}, ["body"]),
    ("coordinator", "dispatch", "POST", "/emergencies/cap",
     {"data": circle_alert("40.7,19.5 " + "9" * 400)}, ["body"]),
    ("coordinator", "dispatch", "GET", "/emergencies?title=%00", {}, ["query", "title"]),
    ("anonymous", "alerts", "GET", "/r/%00", {}, ["path", "token"]),
    ("anonymous", "alerts", "POST", "/r/%00", {"data": {"choice": "accept"}}, ["path", "token"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("role", "service", "method", "url", "kwargs", "loc"),
    HOSTILE_REQUESTS,
    ids=[f"{r[2]} {r[3][:48]}" for r in HOSTILE_REQUESTS],
)
def test_the_hostile_requests_found_before_are_refused_naming_the_field(
    role: str,
    service: str,
    method: str,
    url: str,
    kwargs: dict[str, Any],
    loc: list[Any],
    platform: ConsolePlatform,
    staff: dict[str, dict[str, str]],
    known_ids: dict[str, str],
) -> None:
    headers = dict(staff.get(role, {}))
    request = dict(kwargs)
    if "json" in request:  # a NUL escaped in the JSON text, as a client would send it
        text = json.dumps(request.pop("json")).replace("\\\\u0000", "\\u0000")
        request["data"] = text
        headers["content-type"] = "application/json"
    response = requests.request(
        method,
        getattr(platform, service).url + url.format(**known_ids),
        headers=headers,
        timeout=30,
        **request,
    )
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert isinstance(errors, list), response.text
    assert loc in [error["loc"][: len(loc)] for error in errors], response.text


def operations(url: str) -> list[APIOperation]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    # deletions last, so the real member and emergency serve every other operation first
    return sorted(found, key=lambda op: (op.method.upper() == "DELETE", op.path, op.method))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("service", ["members", "alerts", "dispatch"])
def test_no_server_error_and_every_refusal_names_the_field(
    service: str,
    platform: ConsolePlatform,
    staff: dict[str, dict[str, str]],
    known_ids: dict[str, str],
) -> None:
    url = getattr(platform, service).url
    findings: list[Finding] = []
    timings: list[tuple[float, str]] = []
    session = requests.Session()
    for operation in operations(url):
        key = (operation.method.upper(), operation.path)
        if key in EXCLUDED:
            continue
        started = time.monotonic()
        roles = {"anonymous": {}} if is_public(operation) else staff
        known = {
            name: value
            for name, value in known_ids.items()
            if any(p.name == name for p in operation.path_parameters)
        }
        for role, headers in roles.items():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for path_parameters in [None, known] if known else [None]:
                    for problem, curl in fuzz(
                        operation,
                        mode=mode,
                        headers=headers,
                        examples=EXAMPLES.get(role, PUBLIC_EXAMPLES),
                        path_parameters=path_parameters or None,
                        session=session,
                    ):
                        findings.append(
                            Finding(service, operation.label, role, mode.value, problem, curl)
                        )
        timings.append((time.monotonic() - started, operation.label))
    slowest = ", ".join(f"{label} {s:.1f} s" for s, label in sorted(timings, reverse=True)[:3])
    total = sum(s for s, _ in timings)
    print(f"\n{service}: {len(timings)} operations fuzzed in {total:.0f} s; slowest: {slowest}")
    # one finding per operation and problem kind is enough to read
    distinct: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        distinct.setdefault((finding.operation, finding.problem[:60]), finding)
    assert not distinct, (
        f"{len(distinct)} kinds of bad answers from {service}:\n"
        + "\n".join(str(f) for f in distinct.values())
        + f"\n{platform.logs(service, tail=3000)}"
    )
