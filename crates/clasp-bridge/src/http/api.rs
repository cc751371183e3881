//! The HTTP API's OpenAPI 3.1 document.

use serde_json::{Value as Json, json};

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi() -> Json {
    let value = json!({"description": "Any JSON value: numbers, strings, booleans, null, arrays, objects."});
    let param = json!({
        "type": "object",
        "properties": {
            "address": {"type": "string"},
            "value": value,
            "revision": {"type": "integer"},
            "writer": {"type": ["string", "null"]},
            "timestamp": {"type": ["integer", "null"], "description": "µs since the Unix epoch"}
        },
        "required": ["address", "value", "revision"]
    });
    let error = json!({"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]});
    let errors = |codes: &[(&str, &str)]| {
        let mut m = serde_json::Map::new();
        for (code, what) in codes {
            m.insert(
                (*code).to_owned(),
                json!({"description": what, "content": {"application/json": {"schema": error}}}),
            );
        }
        Json::Object(m)
    };
    let address = json!({"name": "address", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "The CLASP address without its leading `/` (`lights/1/level`)."});
    let pattern = json!({"name": "pattern", "in": "query", "schema": {"type": "string", "default": "/**"},
        "description": "A CLASP pattern: `*` one segment, `**` any number."});
    let mut get_responses = errors(&[
        ("403", "Outside the token's read scope"),
        ("404", "Nothing is stored there"),
        ("401", "A token is required, or it was refused"),
    ]);
    get_responses["200"] =
        json!({"description": "The param", "content": {"application/json": {"schema": param}}});
    let mut put_responses = errors(&[
        ("400", "The body is not JSON, or the address is invalid"),
        ("403", "Outside the token's write scope, or locked"),
        ("401", "A token is required, or it was refused"),
    ]);
    put_responses["200"] =
        json!({"description": "Written", "content": {"application/json": {"schema": param}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "CLASP HTTP bridge", "version": env!("CARGO_PKG_VERSION"),
            "description": "Params and events of a CLASP router over HTTP. Send `Authorization: Bearer <token>`: the token's scopes apply to every request, as to a CLASP client holding it."},
        "paths": {
            "/params": {"get": {"summary": "The params a pattern matches, sorted by address",
                "parameters": [pattern],
                "responses": {"200": {"description": "The params", "content": {"application/json": {"schema":
                    {"type": "object", "properties": {"params": {"type": "array", "items": param}, "count": {"type": "integer"}}}}}},
                    "400": {"description": "Invalid pattern"}}}},
            "/params/{address}": {
                "get": {"summary": "One param", "parameters": [address], "responses": get_responses},
                "put": {"summary": "Set a param (the body is its JSON value)", "parameters": [address],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": value}}},
                    "responses": put_responses}
            },
            "/events/{address}": {"post": {"summary": "Publish an event (the body is its JSON value; empty for none)",
                "parameters": [address],
                "responses": {"202": {"description": "Published"}, "400": {"description": "Invalid body or address"}, "403": {"description": "Outside the token's write scope"}}}},
            "/stream": {"get": {"summary": "Server-Sent Events: the current params under the pattern, then every change (event `update`, data a JSON object with address, value, kind and revision)",
                "parameters": [pattern],
                "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        }
    })
}
