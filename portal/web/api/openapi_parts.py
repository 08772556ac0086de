"""The building blocks of the OpenAPI document, written once: JSON types, objects, references,
responses, parameters and operations. `openapi_schemas`, `openapi` and the provenance and
watching parts all build from these."""

from __future__ import annotations

STR, INT, NUM, BOOL = (
    {"type": "string"},
    {"type": "integer"},
    {"type": "number"},
    {"type": "boolean"},
)
B64 = {"type": "string", "contentEncoding": "base64"}
TIME = {"type": ["string", "null"], "format": "date-time"}


def nullable(schema: dict) -> dict:
    """Returns `schema` widened to admit null."""
    kind = schema["type"]
    return {**schema, "type": [kind, "null"] if isinstance(kind, str) else [*kind, "null"]}


def ref(name: str) -> dict:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict, required: list[str] | None = None) -> dict:
    """An object schema; every property is required unless `required` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
    }


def listing(item: dict) -> dict:
    """A list response: `{"items": [...], "next": cursor or null}`."""
    return obj({"items": {"type": "array", "items": item}, "next": nullable(STR)})


def json_response(description: str, schema: dict) -> dict:
    """A JSON response with its schema."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*statuses: int) -> dict:
    """The error responses of an operation, one per status, all the one error shape."""
    return {
        str(s): json_response("refused; see docs/api.md for the codes", ref("Error"))
        for s in statuses
    }


def query(name: str, schema: dict, description: str, required: bool = False) -> dict:
    """A query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def path_param(name: str, schema: dict, description: str | None = None) -> dict:
    """A path parameter (always required)."""
    found = {"name": name, "in": "path", "required": True, "schema": schema}
    return {**found, "description": description} if description else found


def get(operation_id: str, summary: str, parameters: list, responses: dict) -> dict:
    """A path item with one GET operation."""
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        }
    }
