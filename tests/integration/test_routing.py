"""Route matching: host (exact, wildcard, port ignored), path prefix, methods,
first match wins, strip_prefix, 404 when nothing matches."""

import pytest

from harness import base_config


@pytest.fixture(scope="module")
def servers(module_group):
    names = ["api", "wild", "static", "writer", "first", "second", "prefix"]
    return {n: module_group.whoami(n) for n in names}


@pytest.fixture(scope="module")
def ward(module_group, servers):
    routes = [
        {"name": "api", "match": {"host": "api.example.test"}, "upstream": "api"},
        {"name": "wild", "match": {"host": "*.wild.test"}, "upstream": "wild"},
        {"name": "static", "match": {"path_prefix": "/static"}, "upstream": "static",
         "strip_prefix": True},
        {"name": "writer", "match": {"path_prefix": "/write", "methods": ["POST", "PUT"]},
         "upstream": "writer"},
        {"name": "first", "match": {"path_prefix": "/both/"}, "upstream": "first"},
        {"name": "second", "match": {"path_prefix": "/both/"}, "upstream": "second"},
        {"name": "prefix", "match": {"host": "prefix.test", "path_prefix": "/api"},
         "upstream": "prefix"},
    ]
    cfg = base_config({n: [w] for n, w in servers.items()}, routes=routes)
    return module_group.ward(cfg)


def served_by(ward, path="/", host="other.test", method="GET"):
    r = ward.request(method, path, headers={"Host": host})
    return r.status, r.header("X-Whoami"), r


def test_exact_host(ward):
    assert served_by(ward, "/x", host="api.example.test")[:2] == (200, "api")


def test_host_port_is_ignored(ward):
    assert served_by(ward, "/x", host="api.example.test:8080")[:2] == (200, "api")


def test_wildcard_host_matches_a_subdomain(ward):
    assert served_by(ward, "/", host="a.wild.test")[:2] == (200, "wild")
    assert served_by(ward, "/", host="b.wild.test:81")[1] == "wild"


def test_wildcard_does_not_match_the_bare_domain(ward):
    status, name, _ = served_by(ward, "/", host="wild.test")
    assert status == 404 and name is None


def test_other_host_does_not_match_host_routes(ward):
    status, name, r = served_by(ward, "/x", host="nobody.test")
    assert status == 404


def test_no_route_is_404_json(ward):
    status, _, r = served_by(ward, "/nothing/here", host="nobody.test")
    assert status == 404
    assert r.header("Content-Type", "").startswith("application/json")
    assert r.json() == {"error": "not_found", "status": 404}


def test_strip_prefix(ward):
    _, name, r = served_by(ward, "/static/img/a.png?v=3")
    assert name == "static"
    assert r.json()["target"] == "/img/a.png?v=3"


def test_strip_prefix_of_the_whole_path_gives_slash(ward):
    _, name, r = served_by(ward, "/static")
    assert name == "static"
    assert r.json()["target"] == "/"
    _, _, r = served_by(ward, "/static?q=1")
    assert r.json()["target"] == "/?q=1"


def test_methods(ward):
    assert served_by(ward, "/write", method="POST")[1] == "writer"
    assert served_by(ward, "/write/x", method="PUT")[1] == "writer"
    status, name, _ = served_by(ward, "/write", method="GET")
    assert status == 404 and name is None


def test_without_strip_prefix_path_is_kept(ward):
    _, name, r = served_by(ward, "/write/deep?x=1", method="POST")
    assert r.json()["target"] == "/write/deep?x=1"


def test_first_match_wins(ward):
    for _ in range(3):
        assert served_by(ward, "/both/x")[1] == "first"


def test_path_prefix_is_a_plain_string_prefix(ward):
    assert served_by(ward, "/apix", host="prefix.test")[1] == "prefix"
    assert served_by(ward, "/api/v1", host="prefix.test")[1] == "prefix"
    assert served_by(ward, "/ap", host="prefix.test")[0] == 404


def test_host_and_path_must_both_match(ward):
    assert served_by(ward, "/api", host="other.test")[0] == 404
