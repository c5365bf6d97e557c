"""ledgerhook.client_address: who the client is behind trusted proxies, as tables."""

from __future__ import annotations

import pytest

from ledgerhook.client_address import (
    client_address,
    parse_networks,
    parse_node,
    scope_address,
)
from ledgerhook.settings import SettingsError, load_settings

PROXIES = parse_networks(["10.0.0.0/8", "192.168.1.5", "2001:db8:ffff::/48"])
PG = "postgresql://postgres@127.0.0.1/x"


def _h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode("latin-1")) for n, v in pairs]


XFF = "X-Forwarded-For"
FWD = "Forwarded"

# (peer, headers, expected) with PROXIES trusted and X-Forwarded-For as the proxy header.
XFF_CASES = [
    # The peer is not a proxy: every forwarding header is ignored (spoofing).
    ("203.0.113.9", _h((XFF, "1.1.1.1")), "203.0.113.9"),
    ("203.0.113.9", _h((FWD, "for=1.1.1.1")), "203.0.113.9"),
    ("2001:db8::9", _h((XFF, "1.1.1.1")), "2001:db8::9"),
    # A trusted proxy names its client.
    ("10.1.2.3", _h((XFF, "198.51.100.7")), "198.51.100.7"),
    ("192.168.1.5", _h((XFF, "198.51.100.7")), "198.51.100.7"),
    # Whatever the client wrote left of that is its own claim: ignored.
    ("10.1.2.3", _h((XFF, "1.1.1.1, 2.2.2.2, 198.51.100.7")), "198.51.100.7"),
    ("10.1.2.3", _h((XFF, "1.1.1.1"), (XFF, "198.51.100.7")), "198.51.100.7"),
    # Several trusted hops are skipped, right to left.
    ("10.1.2.3", _h((XFF, "9.9.9.9, 198.51.100.7, 10.9.9.9, 192.168.1.5")), "198.51.100.7"),
    # Only trusted hops: the leftmost of them.
    ("10.1.2.3", _h((XFF, "10.7.7.7, 10.8.8.8")), "10.7.7.7"),
    # A trusted proxy without the header, or with an empty one: the proxy itself.
    ("10.1.2.3", [], "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "")), "10.1.2.3"),
    # The other header is not read: a proxy writing X-Forwarded-For passes Forwarded through.
    ("10.1.2.3", _h((FWD, "for=1.1.1.1")), "10.1.2.3"),
    # Ports and IPv6, normalised.
    ("10.1.2.3", _h((XFF, "198.51.100.7:4711")), "198.51.100.7"),
    ("10.1.2.3", _h((XFF, "2001:DB8:0::7")), "2001:db8::7"),
    ("10.1.2.3", _h((XFF, "[2001:db8::7]:443")), "2001:db8::7"),
    ("10.1.2.3", _h((XFF, "::ffff:198.51.100.7")), "198.51.100.7"),
    ("2001:db8:ffff::1", _h((XFF, "198.51.100.7")), "198.51.100.7"),
    ("::ffff:10.1.2.3", _h((XFF, "198.51.100.7")), "198.51.100.7"),
    ("::ffff:203.0.113.9", _h((XFF, "198.51.100.7")), "203.0.113.9"),
    # Garbage stops the walk at the nearest trusted hop, which cannot be moved by a client.
    ("10.1.2.3", _h((XFF, "198.51.100.7, garbage")), "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "198.51.100.7, unknown, 10.9.9.9")), "10.9.9.9"),
    ("10.1.2.3", _h((XFF, "garbage, 198.51.100.7")), "198.51.100.7"),
    ("10.1.2.3", _h((XFF, "1.2.3.4.5")), "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "198.51.100.7:http")), "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "[198.51.100.7]")), "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "[2001:db8::7")), "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "[2001:db8::7]x")), "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "198.51.100.7, ")), "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "\xff\xfe")), "10.1.2.3"),
    ("10.1.2.3", _h((XFF, "1" * 5000)), "10.1.2.3"),
    # A peer that is not an IP (ASGI test clients, unix sockets) is itself, never trusted.
    ("testclient", _h((XFF, "198.51.100.7")), "testclient"),
    (None, _h((XFF, "198.51.100.7")), None),
]


@pytest.mark.parametrize(("peer", "headers", "expected"), XFF_CASES)
def test_x_forwarded_for(
    peer: str | None, headers: list[tuple[bytes, bytes]], expected: str
) -> None:
    assert client_address(peer, headers, PROXIES) == expected


FORWARDED_CASES = [
    ("10.1.2.3", _h((FWD, "for=198.51.100.7")), "198.51.100.7"),
    ("10.1.2.3", _h((FWD, "For=198.51.100.7;proto=https;by=10.1.2.3")), "198.51.100.7"),
    ("10.1.2.3", _h((FWD, 'proto=https; for="198.51.100.7:4711"')), "198.51.100.7"),
    ("10.1.2.3", _h((FWD, 'for="[2001:db8:cafe::17]:4711"')), "2001:db8:cafe::17"),
    ("10.1.2.3", _h((FWD, 'for="[2001:db8:cafe::17]"')), "2001:db8:cafe::17"),
    # Quoting: a comma or semicolon inside quotes does not split; escapes are undone.
    ("10.1.2.3", _h((FWD, 'for=1.1.1.1;x="a,b;c", for=198.51.100.7')), "198.51.100.7"),
    ("10.1.2.3", _h((FWD, 'for=198.51.100.7;x="a,b;c"')), "198.51.100.7"),
    ("10.1.2.3", _h((FWD, r'for="198.51.100.\7"')), "198.51.100.7"),
    # Left of the proxy's own element: the client's claim, ignored; trusted hops skipped.
    ("10.1.2.3", _h((FWD, "for=1.1.1.1, for=198.51.100.7")), "198.51.100.7"),
    ("10.1.2.3", _h((FWD, "for=1.1.1.1"), (FWD, "for=198.51.100.7, for=10.2.2.2")), "198.51.100.7"),
    # unknown, obfuscated, missing or malformed for=: the nearest trusted hop.
    ("10.1.2.3", _h((FWD, "for=1.1.1.1, for=unknown")), "10.1.2.3"),
    ("10.1.2.3", _h((FWD, "for=1.1.1.1, for=_hidden, for=10.2.2.2")), "10.2.2.2"),
    ("10.1.2.3", _h((FWD, "for=1.1.1.1, proto=https")), "10.1.2.3"),
    ("10.1.2.3", _h((FWD, 'for="198.51.100.7')), "10.1.2.3"),
    ("10.1.2.3", _h((FWD, 'for="198.51.100.7\\"')), "10.1.2.3"),
    ("10.1.2.3", _h((FWD, "for=")), "10.1.2.3"),
    ("10.1.2.3", _h((FWD, ";;;,,,")), "10.1.2.3"),
    # An unterminated quote on the client's line does not swallow the proxy's line.
    ("10.1.2.3", _h((FWD, 'for="1.1.1.1'), (FWD, "for=198.51.100.7")), "198.51.100.7"),
    # X-Forwarded-For is not read when the proxies write Forwarded.
    ("10.1.2.3", _h((XFF, "198.51.100.7")), "10.1.2.3"),
    # Untrusted peer: ignored.
    ("203.0.113.9", _h((FWD, "for=198.51.100.7")), "203.0.113.9"),
]


@pytest.mark.parametrize(("peer", "headers", "expected"), FORWARDED_CASES)
def test_forwarded(peer: str | None, headers: list[tuple[bytes, bytes]], expected: str) -> None:
    assert client_address(peer, headers, PROXIES, "forwarded") == expected


def test_nothing_trusted_means_headers_are_never_read() -> None:
    headers = _h((XFF, "198.51.100.7"), (FWD, "for=198.51.100.7"))
    assert client_address("127.0.0.1", headers, ()) == "127.0.0.1"
    assert client_address("::ffff:127.0.0.1", headers, ()) == "127.0.0.1"
    assert client_address("127.0.0.1", headers, parse_networks(["0.0.0.0/0"])) == "198.51.100.7"


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:80", "1.2.3.4"),
        ("::1", "::1"),
        ("[::1]:80", "::1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("1.2.3.4:", None),
        ("1.2.3.4:-1", None),
        ("[1.2.3.4]:80", None),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("localhost", None),
        ("1.2.3", None),
    ],
)
def test_parse_node(node: str, expected: str | None) -> None:
    ip = parse_node(node)
    assert (None if ip is None else str(ip)) == expected


def test_scope_address_reads_client_and_headers() -> None:
    scope = {"client": ("10.1.2.3", 5555), "headers": _h(("x-forwarded-for", "198.51.100.7"))}
    assert scope_address(scope, ("10.0.0.0/8",)) == "198.51.100.7"
    assert scope_address(scope, ()) == "10.1.2.3"
    assert scope_address({"headers": []}, ("10.0.0.0/8",)) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("10.244.0.0/16", ("10.244.0.0/16",)),
        (" 10.0.0.1 , fd00::/8,", ("10.0.0.1", "fd00::/8")),
    ],
)
def test_trusted_proxies_setting(value: str, expected: tuple[str, ...]) -> None:
    env = {"LEDGERHOOK_DATABASE_URL": PG, "LEDGERHOOK_API__TRUSTED_PROXIES": value}
    assert load_settings(env).api.trusted_proxies == expected


@pytest.mark.parametrize("value", ["10.244.1.0/16", "not-an-ip", "10.0.0.0/33", "*"])
def test_bad_trusted_proxies_stop_the_start(value: str) -> None:
    env = {"LEDGERHOOK_DATABASE_URL": PG, "LEDGERHOOK_API__TRUSTED_PROXIES": value}
    with pytest.raises(SettingsError, match="LEDGERHOOK_API__TRUSTED_PROXIES"):
        load_settings(env)


def test_proxy_header_setting() -> None:
    env = {"LEDGERHOOK_DATABASE_URL": PG, "LEDGERHOOK_API__PROXY_HEADER": "forwarded"}
    assert load_settings(env).api.proxy_header == "forwarded"
    with pytest.raises(SettingsError, match="LEDGERHOOK_API__PROXY_HEADER"):
        load_settings({**env, "LEDGERHOOK_API__PROXY_HEADER": "x-real-ip"})
