"""NUL characters are refused at the door with a 422 naming the field (issue 10, defect 14).

PostgreSQL's text cannot hold U+0000, so before this guard a NUL in a query parameter
(`GET /availability?qualification=%00`), a path (`GET /r/%00`) or a JSON string reached
the database and came back as a 500. The guard (shared.service.NulCharacterRefusal) is
tested here on a small app through its HTTP interface, and its pure part with hypothesis.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Body, FastAPI, Form, Query
from hypothesis import given
from hypothesis import strategies as st

from shared.service import (
    NUL,
    NulCharacterRefusal,
    RequestBodyLimit,
    nul_locations_in_json,
    nul_locations_in_pairs,
)


def guarded_app() -> FastAPI:
    app = FastAPI()

    @app.get("/things/{code}")
    async def thing(code: str, qualification: str | None = Query(None)) -> dict[str, Any]:
        return {"code": code, "qualification": qualification}

    @app.post("/things")
    async def create(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return body

    @app.post("/form")
    async def form(Body: str = Form(...)) -> dict[str, str]:
        return {"Body": Body}

    # the services' routes live in included routers (FastAPI nests them)
    members = APIRouter()

    @members.get("/members/{member_id}/qualifications/{code}")
    async def qualification(member_id: str, code: str) -> dict[str, str]:
        return {"member_id": member_id, "code": code}

    app.include_router(members)
    app.add_middleware(NulCharacterRefusal)
    app.add_middleware(RequestBodyLimit, max_bytes=10_000, upload_max_bytes=10_000)
    return app


async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=guarded_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, url, **kwargs)


def locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


async def test_nul_in_a_query_parameter_is_named() -> None:
    response = await call("GET", "/things/AL?qualification=%00")
    assert locs(response) == [["query", "qualification"]]
    assert response.json()["detail"][0]["type"] == "value_error"


async def test_nul_in_a_path_parameter_is_named() -> None:
    assert locs(await call("GET", "/things/%00")) == [["path", "code"]]


async def test_nul_in_a_path_parameter_of_an_included_router_is_named() -> None:
    response = await call("GET", "/members/m1/qualifications/FIRST%00AID")
    assert locs(response) == [["path", "code"]]


async def test_nul_in_a_path_no_route_matches_is_refused_too() -> None:
    assert locs(await call("GET", "/nowhere/%00/x")) == [["path"]]


async def test_nul_in_a_nested_json_string_is_named_by_its_json_path() -> None:
    body = {"title": "ok", "area": {"polygon": [[1, 2], ["x\u0000"]]}, "tags": ["a", "\u0000"]}
    response = await call("POST", "/things", json=body)
    assert locs(response) == [["body", "area", "polygon", 1, 0], ["body", "tags", 1]]


async def test_nul_in_a_json_key_is_refused_and_shown_escaped() -> None:
    response = await call("POST", "/things", json={"na\u0000me": "x"})
    assert locs(response) == [["body", "na\\u0000me"]]


async def test_nul_in_a_form_field_is_named() -> None:
    response = await call("POST", "/form", data={"Body": "YES\u0000"})
    assert locs(response) == [["body", "Body"]]


async def test_clean_requests_pass_with_their_body_intact() -> None:
    body = {"title": "Flooding \u00e7\u00eb", "n": [1, 2.5, None, True], "nested": {"a": "b"}}
    response = await call("POST", "/things", json=body)
    assert response.status_code == 200
    assert response.json() == body
    response = await call("GET", "/things/AL?qualification=FIRST_AID")
    assert response.json() == {"code": "AL", "qualification": "FIRST_AID"}
    response = await call("POST", "/form", data={"Body": "PO 15"})
    assert response.json() == {"Body": "PO 15"}


async def test_invalid_json_is_left_to_fastapi() -> None:
    response = await call(
        "POST", "/things", content=b'{"a": "\x00', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_an_oversized_body_is_still_a_413() -> None:
    response = await call("POST", "/things", json={"a": "x" * 20_000})
    assert response.status_code == 413


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


def every_string(value: Any) -> list[str]:
    """Every string in a JSON document, keys included (flattened through its text form)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(s for item in value.values() for s in every_string(item))]
    if isinstance(value, list):
        return [s for item in value for s in every_string(item)]
    return []


@given(json_values)
def test_every_reported_location_leads_to_a_nul_and_none_is_missed(value: Any) -> None:
    found = nul_locations_in_json(value)
    for loc in found:
        assert loc[0] == "body"
        at = value
        for part in loc[1:]:
            at = at[part]
        # a location names a string holding NUL, or a key holding one
        assert (isinstance(at, str) and NUL in at) or NUL in str(loc[-1])
    assert len(found) == len(set(found))
    assert bool(found) == any(NUL in text for text in every_string(value))


@given(st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=5))
def test_pairs_with_a_nul_are_all_named(pairs: list[tuple[str, str]]) -> None:
    found = nul_locations_in_pairs(pairs, "query")
    assert found == [("query", k) for k, v in pairs if NUL in k + v]
