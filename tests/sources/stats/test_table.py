"""data.csv from a windowed result (exports-spec.md §5), cell by cell."""

from __future__ import annotations

import csv
import io
import json

import pytest

from downloader.sources.stats.table import to_csv


def one_cell(raw_json_cell: str) -> bytes:
    """The first field of the data line of a result whose first cell is this JSON text."""
    body = '{"meta":[{"name":"c"},{"name":"d"}],"data":[[' + raw_json_cell + ',"x"]]}'
    out = to_csv(body.encode())
    header, line = out.split(b"\r\n", 1)
    assert header == b"c,d"
    assert line.endswith(b",x\r\n")
    return line[: -len(b",x\r\n")]


@pytest.mark.parametrize(
    ("cell", "field"),
    [
        ('"plain"', b"plain"),
        ('"a,b"', b'"a,b"'),
        ('"say \\"hi\\""', b'"say ""hi"""'),
        ('"cr\\rhere"', b'"cr\rhere"'),
        ('"lf\\nhere"', b'"lf\nhere"'),
        ('"crlf\\r\\n"', b'"crlf\r\n"'),
        ('"C:\\\\temp\\\\new"', b"C:\\temp\\new"),  # backslashes as they are, unquoted
        ('"北京 ✓ 😀"', "北京 ✓ 😀".encode()),
        ('"\\u5317\\u4eac"', "北京".encode()),  # escaped in JSON, plain text in the CSV
        ('""', b""),
        ('" padded "', b" padded "),
        ('"tab\\there"', b"tab\there"),
        ("null", b""),
        ("true", b"true"),
        ("false", b"false"),
        ("0", b"0"),
        ("-12", b"-12"),
        ("12345678901234567890123", b"12345678901234567890123"),
        ("1.50", b"1.50"),  # the JSON text, not a float round trip
        ("1E5", b"1E5"),
        ("-0.0", b"-0.0"),
        ("1e-07", b"1e-07"),
        ('{"城市":"上海","n":[1,2.50,null,true]}',
         '"{""城市"":""上海"",""n"":[1,2.50,null,true]}"'.encode()),
        ('{ "k" : "v" }', b'"{""k"":""v""}"'),  # compact, and quoted for its quotes
        ("[1, 2]", b'"[1,2]"'),  # quoted for its comma
        ("[]", b"[]"),
        ("{}", b"{}"),
        ('["a\\nb"]', b'"[""a\\nb""]"'),  # nested strings stay JSON-escaped inside
        ('{"é":"\\u00e9"}', '"{""é"":""é""}"'.encode()),
    ],
)  # fmt: skip
def test_cells(cell: str, field: bytes) -> None:
    assert one_cell(cell) == field


def test_header_and_rows_round_trip_through_a_csv_reader() -> None:
    result = {
        "id": "YoX28w7R",
        "meta": [{"name": "目标用户", "dimension": True}, {"name": 'a,"b"', "metric": True}],
        "data": [["全部用户, 新", 1], ["line\nbreak", None], ["", 2.5]],
    }
    out = to_csv(json.dumps(result, ensure_ascii=False).encode())
    rows = list(csv.reader(io.StringIO(out.decode("utf-8"), newline="")))
    assert rows == [["目标用户", 'a,"b"'], ["全部用户, 新", "1"], ["line\nbreak", ""], ["", "2.5"]]
    assert out.count(b"\r\n") == 4  # CRLF after every record, the embedded LF kept


def test_empty_data_gives_a_header_only_file() -> None:
    assert to_csv(b'{"meta":[{"name":"a"},{"name":"b"}],"data":[]}') == b"a,b\r\n"


def test_output_is_utf8_without_bom() -> None:
    out = to_csv('{"meta":[{"name":"城市"}],"data":[["上海"]]}'.encode())
    assert out == "城市\r\n上海\r\n".encode()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "not JSON"),
        (b'{"meta":[],"data":[[NaN]]}', "not JSON"),
        (b"[]", "object"),
        (b'{"data":[]}', "meta"),
        (b'{"meta":{},"data":[]}', "meta"),
        (b'{"meta":[{"title":"a"}],"data":[]}', "meta"),
        (b'{"meta":["a"],"data":[]}', "meta"),
        (b'{"meta":[{"name":1}],"data":[]}', "meta"),
        (b'{"meta":[{"name":"a"}]}', "data"),
        (b'{"meta":[{"name":"a"}],"data":null}', "data"),
        (b'{"meta":[{"name":"a"}],"data":[1]}', "row 0"),
        (b'{"meta":[{"name":"a"}],"data":[[1],[1,2]]}', "row 1"),
        (b'{"meta":[{"name":"a"},{"name":"b"}],"data":[[1]]}', "row 0"),
    ],
)
def test_malformed_results_raise_a_clear_value_error(body: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        to_csv(body)
