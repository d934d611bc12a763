"""The CSV importer with hostile input (issue 10, defect 14): random text and bytes, huge
cells, NUL characters, odd encodings. `parse_csv` and `count_rows` never raise; what
they refuse comes back as a report naming the row, line and column; nothing they accept
holds a character PostgreSQL cannot store. Before the fix a cell over 128 KiB raised
`csv.Error` (a 500 from `POST /members/import`) and a NUL in a cell reached the
database (another 500)."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.members.importing import (
    CSV_COLUMNS,
    MAX_CELL_CHARS,
    BadRow,
    count_rows,
    csv_text,
    parse_csv,
)
from tests.members.conftest import MembersUnderTest, make_section, unique_phone, unique_section

HEADER = ",".join(CSV_COLUMNS)
GOOD_ROW = (
    "AL,Arta Hoxha,+355691234567,arta@example.org,sq,FIRST_AID:2030-01-01,"
    "40.7,19.5,available,23:00-06:30,yes"
)


def every_string(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in every_string(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in every_string(item)]
    return []


def check_outcome(text: str) -> None:
    rows, errors = parse_csv(text, max_rows=50)
    for error in errors:
        assert error.row >= 0 and error.line >= 0
        assert error.column and error.reason
        assert "\x00" not in error.column  # the report is stored as JSON in PostgreSQL too
    for row in rows:
        assert not any("\x00" in s for s in every_string(row.member.model_dump(mode="json")))
    assert rows or errors
    assert count_rows(text, max_rows=50) >= 0


cell = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["\x00", '"', '""', "\r", "\n", ",", "x" * 200, "+355691234567", "AL", "FIRST_AID:9999-99-99"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(cell, min_size=1, max_size=13), max_size=6))
def test_rows_of_random_cells_never_raise(rows: list[list[str]]) -> None:
    out = io.StringIO()
    csv.writer(out).writerows([list(CSV_COLUMNS), *rows])
    check_outcome(out.getvalue())


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_random_text_never_raises(text: str) -> None:
    check_outcome(text)


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_random_text_after_a_valid_header_never_raises(text: str) -> None:
    check_outcome(f"{HEADER}\n{text}")


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_are_text_or_refused_naming_the_file(data: bytes) -> None:
    try:
        text = csv_text(data)
    except BadRow as exc:
        assert exc.column == "file"
        return
    check_outcome(text)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig"])
def test_odd_encodings_are_read_or_refused_naming_the_file(encoding: str) -> None:
    data = f"{HEADER}\n{GOOD_ROW.replace('Arta Hoxha', 'Çelë Ëndërr Zoë')}\n".encode(encoding)
    try:
        text = csv_text(data)
    except BadRow as exc:
        assert exc.column == "file"
        return
    rows, errors = parse_csv(text, max_rows=10)
    assert (len(rows), errors) == (1, []), errors


@pytest.mark.parametrize("size", [MAX_CELL_CHARS + 1, 1_000_000])
def test_a_huge_cell_is_refused_naming_its_row_and_line(size: int) -> None:
    text = f"{HEADER}\n{GOOD_ROW}\nAL,{'x' * size},+355691234568\n{GOOD_ROW}\n"
    _, errors = parse_csv(text, max_rows=10)
    assert [(e.row, e.line) for e in errors][:1] == [(2, 3)]
    assert "characters" in errors[0].reason
    assert count_rows(text, max_rows=10) >= 1


def test_a_huge_header_cell_is_refused_naming_the_header() -> None:
    text = f"{HEADER},{'y' * 200_000}\n{GOOD_ROW}\n"
    rows, errors = parse_csv(text, max_rows=10)
    assert rows == []
    assert [(e.row, e.line) for e in errors] == [(0, 1)]


@pytest.mark.parametrize("column", ["full_name", "email", "qualifications", "quiet_hours"])
def test_a_nul_in_a_cell_is_refused_naming_its_column(column: str) -> None:
    cells = dict(zip(CSV_COLUMNS, next(csv.reader([GOOD_ROW])), strict=True))
    cells[column] = cells[column][:3] + "\x00" + cells[column][3:]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerow(cells)
    rows, errors = parse_csv(out.getvalue(), max_rows=10)
    assert rows == []
    assert [(e.row, e.column) for e in errors] == [(1, column)]


def test_a_nul_in_a_header_name_is_reported_escaped() -> None:
    rows, errors = parse_csv(f"{HEADER},bad\x00name\n{GOOD_ROW},x\n", max_rows=10)
    assert rows == []
    assert [(e.column, e.reason) for e in errors] == [("bad\\u0000name", "unknown column")]


# --- through the service, as a person uploading the file ----------------------------


async def test_the_service_answers_a_huge_cell_and_a_nul_with_a_report(
    members_service: MembersUnderTest,
) -> None:
    async with members_service.admin() as admin:
        section = await make_section(admin, unique_section())
        good = f"{section},Good Member,{unique_phone()}"
        for bad_row, where in [
            (f"{section},{'x' * 200_000},{unique_phone()}", (2, 3, "row")),
            (f"{section},Bad\x00Name,{unique_phone()}", (2, 3, "full_name")),
        ]:
            body = f"section,full_name,phone\n{good}\n{bad_row}\n".encode()
            response = await admin.post(
                "/members/import", content=body, headers={"Content-Type": "text/csv"}
            )
            assert response.status_code == 422, response.text
            errors = response.json()["errors"]
            assert [(e["row"], e["line"], e["column"]) for e in errors] == [where]
        listed = await admin.get("/members", params={"section": section})
        assert listed.json()["total"] == 0
