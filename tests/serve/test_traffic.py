"""Traffic on the request path: the sticky key of an A/B split."""

from __future__ import annotations


def test_sticky_key_is_read_from_a_header_or_the_json_body():
    from starlette.requests import Request

    from shipyard.serve._traffic import sticky_value

    def request(headers=()):
        return Request({"type": "http", "headers": [(k.encode(), v.encode())
                                                    for k, v in headers]})

    assert sticky_value(request([("x-user", "ana")]), "x-user", b"{}") == "ana"
    assert sticky_value(request(), "user", b'{"records": [{"user": 7}]}') == "7"
    assert sticky_value(request(), "user", b'{"columns": {"user": ["bo", "cy"]}}') == "bo"
    assert sticky_value(request(), "user", b'{"parameters": {"user": "di"}}') == "di"
    assert sticky_value(request(), "user", b'{"records": []}') is None
    assert sticky_value(request(), "user", b"not json") is None
