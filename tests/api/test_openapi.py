"""/openapi.json: a valid OpenAPI 3.1 document whose paths and methods are exactly the url_map's."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate


def _flask_routes(app) -> set[tuple[str, str]]:
    """Every API rule; the browser pages (/docs, /ui/...) are HTML for people and, like FastAPI's
    /docs, not part of the document."""
    from jobqueue_api.routes.docs import BROWSER_PATHS

    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule in BROWSER_PATHS or rule.rule.startswith(tuple(f"{p}/" for p in BROWSER_PATHS)):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def _spec_routes(spec) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item}


def test_spec_is_valid_openapi_31(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_spec_matches_the_url_map_exactly(app, client):
    """Every rule and method is documented, and nothing else is, except the per-operation
    instances of /analysis/{operation} (one per catalogue entry, with its own parameters)."""
    spec = client.get("/openapi.json").get_json()
    catalogue = app.extensions["jobqueue"].catalogue
    instances = {(f"/analysis/{name}", "get") for name in catalogue.names()}
    assert _spec_routes(spec) - instances == _flask_routes(app)
    assert instances <= _spec_routes(spec)
    for name in catalogue.names():
        declared = {p.name: p.required for p in catalogue.get(name).params}
        documented = {p["name"]: p["required"] for p in spec["paths"][f"/analysis/{name}"]["get"]["parameters"]}
        assert documented == declared


def test_path_parameters_are_declared(client):
    spec = client.get("/openapi.json").get_json()
    for path, item in spec["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (path, method)


def test_submission_schemas_come_from_the_catalogue(app, client):
    spec = client.get("/openapi.json").get_json()
    variants = {v["title"]: v for v in spec["components"]["schemas"]["Submission"]["oneOf"]}
    catalogue = app.extensions["jobqueue"].catalogue
    assert set(variants) == set(catalogue.names())
    for op in catalogue:
        spec_params = variants[op.name]["properties"]["params"]
        declared = op.params_schema()
        assert set(spec_params["properties"]) == set(declared["properties"])
        assert spec_params["required"] == declared["required"]
        # the registry declares optional parameters nullable itself; the spec repeats it verbatim
        assert spec_params["properties"] == declared["properties"]


def test_a_string_the_api_refuses_empty_is_declared_non_empty(client):
    """The spec let road be "" (no minLength) while the API answers it 400 "'road' must not be
    empty": a client generated from the spec, or a form built from it, sends what the spec allows and
    is refused (security.md listed it as open). Every string parameter the API refuses empty now says
    minLength 1, in the spec and in /operations."""
    spec = client.get("/openapi.json").get_json()
    operations = {o["name"]: o for o in client.get("/operations").get_json()["operations"]}
    for variant in spec["components"]["schemas"]["Submission"]["oneOf"]:
        for name, schema in variant["properties"]["params"]["properties"].items():
            if "string" not in schema["type"] or "format" in schema or "enum" in schema:
                continue
            answer = client.post("/submit", json={"operation": variant["title"], "params": {name: ""}})
            if answer.status_code == 400 and answer.get_json().get("param") == name:
                assert schema.get("minLength") == 1, (variant["title"], name, schema)
                (listed,) = [p for p in operations[variant["title"]]["params"] if p["name"] == name]
                assert listed.get("min_length") == 1, listed
    road = next(v for v in spec["components"]["schemas"]["Submission"]["oneOf"] if v["title"] == "incidents_by_road")
    assert road["properties"]["params"]["properties"]["road"]["minLength"] == 1


def test_optional_params_may_be_null_in_spec_and_in_validation(client):
    spec = client.get("/openapi.json").get_json()
    sleep = next(v for v in spec["components"]["schemas"]["Submission"]["oneOf"] if v["title"] == "sleep")
    assert "null" in sleep["properties"]["params"]["properties"]["seconds"]["type"]
    assert client.post("/submit", json={"operation": "sleep", "params": {"seconds": None}}).status_code == 202


def test_every_error_status_a_route_documents_uses_the_error_schema(client):
    spec = client.get("/openapi.json").get_json()
    for item in spec["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                if status == "414":  # gunicorn's refusal, before the app, in the same JSON shape
                    assert "4,094 bytes" in response["description"]
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


def test_submit_documents_its_wait(client):
    """POST /submit?wait= and Prefer: wait are declared, with the 200 and the Location header."""
    submit = client.get("/openapi.json").get_json()["paths"]["/submit"]["post"]
    assert {(p["name"], p["in"]) for p in submit["parameters"]} == {
        ("wait", "query"),
        ("Prefer", "header"),
        ("Idempotency-Key", "header"),
    }
    assert submit["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Job"}
    assert "Location" in submit["responses"]["200"]["headers"] and "Location" in submit["responses"]["202"]["headers"]


def _resolved(spec, node):
    """``node`` with every ``$ref`` into the document's schemas replaced by the schema itself."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _resolved(spec, spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
        return {key: _resolved(spec, value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(spec, value) for value in node]
    return node


def test_the_catalogue_says_which_operations_make_a_png_as_documented(client):
    """``result`` is how a client (the CLI's default <job_id>.png) knows a job's result will be a
    PNG before submitting it: declared in the document, and image/png exactly for the plots."""
    import jsonschema

    spec = client.get("/openapi.json").get_json()
    answer = client.get("/operations").get_json()
    schema = spec["paths"]["/operations"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(answer, _resolved(spec, schema))
    assert "image/png" in spec["components"]["schemas"]["Operation"]["properties"]["result"]["enum"]
    pngs = {op["name"] for op in answer["operations"] if op["result"] == "image/png"}
    assert pngs and pngs == {op["name"] for op in answer["operations"] if op["name"].startswith("plot_")}


def test_submit_answers_match_their_documented_schemas(client):
    """The tutorial 202, the wait form's 202 (a job document, status submitted) and its 400 each
    validate against what the document declares for that status (the wait form's 202 matches both
    Accepted and Job: a oneOf there rejected it)."""
    import jsonschema

    spec = client.get("/openapi.json").get_json()

    def resolved(node):
        return _resolved(spec, node)

    responses = spec["paths"]["/submit"]["post"]["responses"]
    body = {"operation": "sleep", "params": {"seconds": 0}}
    for path, status in (("/submit", 202), ("/submit?wait=0", 202), ("/submit?wait=soon", 400)):
        answer = client.post(path, json=body)
        assert answer.status_code == status, (path, answer.get_json())
        jsonschema.validate(
            answer.get_json(), resolved(responses[str(status)]["content"]["application/json"]["schema"])
        )


@pytest.mark.parametrize(
    ("method", "path", "spec_path", "status"),
    [
        ("post", "/submit", "/submit", 400),
        ("post", "/jobs", "/jobs", 400),
        ("get", "/analysis/{}", "/analysis/{operation}", 404),
    ],
)
def test_unknown_operation_answers_declare_every_field(client, method, path, spec_path, status):
    """An unknown operation's answer carries ``operations`` and, for a near miss (top_location),
    ``did_you_mean``: each field is declared in the Error schema the document gives for that status.
    The schema itself allows undeclared fields, so the check here is strict (additionalProperties
    false): a field the API adds and the document does not name fails it."""
    import jsonschema

    spec = client.get("/openapi.json").get_json()
    documented = _resolved(spec, spec["paths"][spec_path][method]["responses"][str(status)])
    strict = {**documented["content"]["application/json"]["schema"], "additionalProperties": False}
    seen = []
    for name in ("top_location", "no_such_thing_at_all"):
        if method == "post":
            answer = client.post(path, json={"operation": name})
        else:
            answer = client.get(path.format(name))
        assert answer.status_code == status, answer.get_json()
        body = answer.get_json()
        assert body["error"] == "unknown_operation", body
        jsonschema.validate(body, strict)
        seen.append(body.get("did_you_mean"))
    assert seen == ["top_locations", None]
    assert strict["properties"]["did_you_mean"]["type"] == "string"


def test_every_request_body_offers_examples_the_api_accepts(client):
    """Swagger UI's "Try it out" fills the body from the document; with no example it made one up
    from the schema (`{"operation": "incident_count_by_date", "params": {"date": "1764-"}}`, a new
    random date each load), so Execute answered 400. Each operation's example submission is now an
    example, and each one, sent as it stands, is accepted."""
    spec = client.get("/openapi.json").get_json()
    bodies = [
        (path, method, op["requestBody"]["content"]["application/json"])
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if "requestBody" in op
    ]
    assert {(p, m) for p, m, _ in bodies} >= {("/submit", "post"), ("/jobs", "post")}
    names = {o["name"] for o in client.get("/operations").get_json()["operations"]}
    for path, _method, media in bodies:
        examples = media.get("examples") or {}
        assert {e["value"]["operation"] for e in examples.values()} == names, (path, sorted(examples))
        first = next(iter(examples.values()))["value"]
        assert first["operation"] == "incident_count_by_date", first  # the tutorial's, as Swagger's default
        for name, example in examples.items():
            answer = client.post(path, json=example["value"])
            assert answer.status_code == 202, (path, name, answer.get_json())


def test_each_analysis_path_with_its_example_parameters_answers(data_app):
    """The concrete /analysis/<operation> paths carry each parameter's example, so "Try it out"
    starts from values that run."""
    data_client = data_app.test_client()
    spec = data_client.get("/openapi.json").get_json()
    ran = 0
    for path, item in spec["paths"].items():
        if not path.startswith("/analysis/") or "{" in path or path.startswith("/analysis/plot_"):
            continue
        query = {p["name"]: p["example"] for p in item["get"]["parameters"] if "example" in p}
        assert all("example" in p for p in item["get"]["parameters"] if p["required"]), path
        answer = data_client.get(path, query_string=query)
        assert answer.status_code == 200, (path, query, answer.get_json())
        ran += 1
    assert ran >= 10


def test_submit_documents_its_idempotency_key(client):
    """Both submit routes declare the Idempotency-Key header, the 422 of a reused key, and the
    headers an answer that honoured a key carries (docs/api.md)."""
    paths = client.get("/openapi.json").get_json()["paths"]
    for op in (paths["/submit"]["post"], paths["/jobs"]["post"]):
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in op["parameters"])
        assert "idempotency_key_reused" in op["responses"]["422"]["description"]
        assert {"Idempotency-Key", "Idempotent-Replayed"} <= set(op["responses"]["202"]["headers"])
        assert "Idempotency-Key" in op["responses"]["504"]["headers"]
