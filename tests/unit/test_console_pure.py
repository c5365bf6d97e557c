"""The console's pure parts: body view, charts, CSRF tokens, redirects, forms, filters, templates."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit.errors import InvalidQuery
from ledgerhook.console import bodies, charts, forms, security, templating
from ledgerhook.console.errors import BadForm

TEMPLATES = Path(templating.__file__).resolve().parent / "templates"


# ---------------------------------------------------------------- body view


def _strip_ws_outside_strings(text: str) -> str:
    out, in_string, escaped = [], False, False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif ch not in " \t\r\n":
            out.append(ch)
    return "".join(out)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"a":2,"b":[1.50,2e10,-0],"s":"x,{y}:[z] \\" q"}',
        b'{"nested":{"deep":[[],{}]},"esc":"\\\\\\"","u":"\\u003cscript\\u003e"}',
        b'[{"k": "v with spaces", "n": 12345678901234567890123}]',
        b'{"broken": [1, 2',
    ],
)
def test_reindent_keeps_every_token_as_sent(body: bytes) -> None:
    view = bodies.body_view(body)
    assert view.pretty is not None
    # Same characters outside whitespace: duplicate keys, number spellings, escapes all kept.
    assert _strip_ws_outside_strings(view.pretty) == _strip_ws_outside_strings(body.decode())
    assert view.text == body.decode()


def test_reindent_indents_structure() -> None:
    assert bodies.reindent('{"a":[1,2],"b":{ },"c":[]}') == (
        '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {},\n  "c": []\n}'
    )


def test_deep_or_huge_bodies_stay_bounded() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    view = bodies.body_view(deep)
    assert view.pretty is None  # would grow past the view limit
    assert view.text == deep.decode()
    huge = b'{"x":"' + b"a" * (bodies.PRETTY_LIMIT + 10) + b'"}'
    assert bodies.body_view(huge).pretty is None
    assert bodies.reindent("[" * 200 + "]" * 200, limit=10**6) is not None
    indent = max(len(line) - len(line.lstrip()) for line in bodies.reindent("[" * 200)
                 .splitlines())  # fmt: skip
    assert indent <= 2 * bodies.MAX_DEPTH


def test_non_utf8_and_non_json_bodies() -> None:
    view = bodies.body_view(b"\xff\xfe<script>x</script>")
    assert not view.valid_utf8 and view.pretty is None
    assert "<script>" in view.text  # escaped by the template, not here
    big = b"x" * (bodies.VIEW_LIMIT + 5)
    assert bodies.body_view(big).truncated


# ---------------------------------------------------------------- charts


def test_sparkline_scales_and_breaks_at_gaps() -> None:
    s = charts.sparkline([0.0, 10.0, None, 5.0], width=30, height=24)
    assert s.maximum == 10.0 and s.last == 5.0 and s.samples == 3
    assert s.segments == ["0.0,22.0 10.0,2.0", "30.0,12.0 30.0,12.0"]
    empty = charts.sparkline([None, None])
    assert empty.segments == [] and empty.last is None
    flat = charts.sparkline([0.0] * 3, width=20, height=10)
    assert flat.segments == ["0.0,8.0 10.0,8.0 20.0,8.0"]


# ---------------------------------------------------------------- security


def test_csrf_tokens_are_tied_to_their_secret_and_purpose() -> None:
    t = security.csrf_token("s" * 43, "session")
    assert security.csrf_ok("s" * 43, "session", t)
    assert not security.csrf_ok("t" * 43, "session", t)
    assert not security.csrf_ok("s" * 43, "sign-in", t)
    assert not security.csrf_ok("s" * 43, "session", None)
    assert not security.csrf_ok(None, "session", t)
    assert not security.csrf_ok("s" * 43, "session", "")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/console/alerts/5", "/console/alerts/5"),
        ("/console/deliveries?provider=stripe", "/console/deliveries?provider=stripe"),
        ("/console", "/console"),
        (None, security.HOME),
        ("", security.HOME),
        ("https://evil.example/console/", security.HOME),
        ("//evil.example/console/", security.HOME),
        ("/\\evil.example", security.HOME),
        ("javascript:alert(1)", security.HOME),
        ("/consolex/evil", security.HOME),
        ("/audit/deliveries", security.HOME),
        ("/console/\nSet-Cookie: x", security.HOME),
        ("/console/" + "a" * 3000, security.HOME),
    ],
)
def test_safe_next_only_allows_console_paths(value: str | None, expected: str) -> None:
    assert security.safe_next(value) == expected


def test_csp_is_strict() -> None:
    directives = dict(d.strip().split(" ", 1) for d in security.CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in security.CSP


# ---------------------------------------------------------------- forms


def test_delivery_search_reads_a_submitted_form() -> None:
    s = forms.delivery_search(
        {
            "provider": "stripe",
            "endpoint": "",
            "event_type": " invoice.paid ",
            "outcome": "dead_letter",
            "received_from": "2026-01-31T23:59",
            "received_to": "2026-02-01T01:00:30+01:00",
            "cursor": "",
        }
    )
    f = s.filter
    assert f.provider == "stripe" and f.endpoint is None and f.event_type == "invoice.paid"
    assert f.outcome == "dead_letter" and s.cursor is None
    assert f.received_from == datetime(2026, 1, 31, 23, 59, tzinfo=UTC)
    assert f.received_to is not None and f.received_to.utcoffset() is not None


@pytest.mark.parametrize(
    "params",
    [
        {"provider": "paypal"},
        {"outcome": "eaten"},
        {"received_from": "yesterday"},
        {"event_id": "x" * 256},
        {"object_id": "a\x00b"},
    ],
)
def test_delivery_search_refuses_bad_values(params: dict[str, str]) -> None:
    with pytest.raises(BadForm):
        forms.delivery_search(params)


def test_delivery_search_refuses_what_the_api_refuses() -> None:
    with pytest.raises(InvalidQuery):
        forms.delivery_search({"received_from": "2026-02-01T00:00", "received_to": "2026-01-01"})


def test_alert_and_object_search() -> None:
    a = forms.alert_search({"status": "open", "rule": "", "severity": "critical"})
    assert (a.status, a.rule, a.severity, a.provider) == ("open", None, "critical", None)
    with pytest.raises(BadForm):
        forms.alert_search({"rule": "made_up"})
    o = forms.object_search({"kind": "subscriptions", "provider": "stripe", "id": "sub_1/2"})
    assert (o.kind, o.provider, o.object_id, o.account) == (
        "subscriptions",
        "stripe",
        "sub_1/2",
        None,
    )
    assert forms.object_search({}).kind == "customers"
    with pytest.raises(BadForm):
        forms.object_search({"kind": "processed"})


# ---------------------------------------------------------------- templates and filters


def test_filters() -> None:
    assert templating.changes({"b": [1, 2], "a": [None, "x"]}) == [
        ("a", "null", '"x"'),
        ("b", "1", "2"),
    ]
    assert templating.changes(None) == []
    assert templating.qs({"a": "x y", "b": "", "c": None, "d": "&<"}) == "a=x+y&d=%26%3C"
    assert templating.seconds(0.0421) == "0.042 s"
    assert templating.seconds(4000) == "67 min"
    assert templating.unix(10**20) == str(10**20)
    assert json.loads(templating.to_json({"b": 1, "a": [1]})) == {"a": [1], "b": 1}


def test_templates_never_mark_input_safe() -> None:
    env = templating.environment()
    assert env.autoescape is True
    for path in TEMPLATES.glob("*.html"):
        text = path.read_text()
        assert not re.search(r"\|\s*safe\b", text), path.name
        assert "autoescape false" not in text, path.name
        assert "style=" not in text, f"{path.name}: inline style breaks the CSP"
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"{path.name}: inline script"
        assert not re.search(r"\bon[a-z]+=", text), f"{path.name}: inline event handler"
        env.get_template(path.name)  # compiles
