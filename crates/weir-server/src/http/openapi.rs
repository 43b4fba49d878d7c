//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`, built once.

use std::sync::OnceLock;

use axum::Json;
use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn body(schema: Value) -> Value {
    json!({ "required": false, "content": { "application/json": { "schema": schema } } })
}

fn queue_param() -> Value {
    json!({ "name": "name", "in": "path", "required": true,
            "schema": { "type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$" } })
}

fn receipts_op(summary: &str, extra: Value, out_field: &str) -> Value {
    let mut props =
        json!({ "receipts": { "type": "array", "maxItems": 1000, "items": { "type": "string" } } });
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({ "post": {
        "summary": summary,
        "parameters": [queue_param()],
        "requestBody": body(json!({ "type": "object", "required": ["receipts"], "additionalProperties": false, "properties": props })),
        "responses": {
            "200": ok_json("Done; `invalid` lists receipts unknown or expired.", json!({ "type": "object", "properties": {
                out_field: { "type": "integer" }, "invalid": { "type": "array", "items": { "type": "string" } } } })),
            "400": error_response("Bad input."), "404": error_response("Unknown queue."), "413": error_response("Too many receipts.")
        }
    } })
}

fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Weir HTTP API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Durable queues. Errors are {\"error\": {\"code\", \"message\"}}; busy (503) carries Retry-After in seconds." },
        "paths": {
            "/healthz": { "get": { "summary": "Liveness.", "responses": { "200": { "description": "ok" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics.", "responses": { "200": { "description": "Prometheus text format" } } } },
            "/v1/queues": { "get": { "summary": "List queues with their stats.",
                "responses": { "200": ok_json("Queues.", json!({ "type": "object", "properties": { "queues": { "type": "array", "items": { "$ref": "#/components/schemas/QueueStats" } } } })) } } },
            "/v1/queues/{name}": {
                "put": { "summary": "Create (201) or update (200) a queue; absent fields keep their value. Creates <name>.dlq too.",
                    "parameters": [queue_param()],
                    "requestBody": body(json!({ "$ref": "#/components/schemas/QueueConfig" })),
                    "responses": { "200": ok_json("Updated.", json!({ "$ref": "#/components/schemas/QueueConfig" })),
                                   "201": ok_json("Created.", json!({ "$ref": "#/components/schemas/QueueConfig" })),
                                   "400": error_response("Bad name or config.") } },
                "get": { "summary": "Queue stats and config.", "parameters": [queue_param()],
                    "responses": { "200": ok_json("Stats.", json!({ "$ref": "#/components/schemas/QueueStats" })), "404": error_response("Unknown queue.") } },
                "delete": { "summary": "Delete a queue and its data.", "parameters": [queue_param()],
                    "responses": { "204": { "description": "Deleted." }, "404": error_response("Unknown queue.") } }
            },
            "/v1/queues/{name}/messages": { "post": {
                "summary": "Publish a batch; answered once durable. All or nothing.",
                "parameters": [queue_param()],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["messages"], "additionalProperties": false,
                    "properties": { "messages": { "type": "array", "minItems": 1, "maxItems": 1000, "items": { "$ref": "#/components/schemas/MessageIn" } } } } } } },
                "responses": {
                    "200": ok_json("Stored (or recognised as duplicates).", json!({ "type": "object", "properties": { "messages": { "type": "array", "items": {
                        "type": "object", "properties": { "id": { "type": "string" }, "duplicate": { "type": "boolean" } } } } } })),
                    "400": error_response("Bad input."), "404": error_response("Unknown queue."),
                    "413": error_response("Body or batch too large."), "503": error_response("Busy: nothing of the batch was stored; retry after Retry-After seconds.")
                } } },
            "/v1/queues/{name}/receive": { "post": {
                "summary": "Lease up to `max` messages, waiting up to `wait_ms` for the first.",
                "parameters": [queue_param()],
                "requestBody": body(json!({ "type": "object", "additionalProperties": false, "properties": {
                    "max": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 1 },
                    "wait_ms": { "type": "integer", "minimum": 0, "maximum": 20000, "default": 0 },
                    "lease_ms": { "type": "integer", "minimum": 100, "maximum": 43200000 } } })),
                "responses": { "200": ok_json("Deliveries (possibly none).", json!({ "type": "object", "properties": { "messages": { "type": "array", "items": { "$ref": "#/components/schemas/Delivery" } } } })),
                               "400": error_response("Bad input."), "404": error_response("Unknown queue.") } } },
            "/v1/queues/{name}/ack": receipts_op("Acknowledge deliveries (durable before the answer).", json!({}), "acked"),
            "/v1/queues/{name}/nack": receipts_op("Return deliveries for redelivery after `delay_ms` or the queue's backoff.", json!({ "delay_ms": { "type": "integer", "minimum": 0 } }), "nacked"),
            "/v1/queues/{name}/extend": receipts_op("Extend leases to `lease_ms` from now.", json!({ "lease_ms": { "type": "integer", "minimum": 100 } }), "extended"),
            "/v1/queues/{name}/purge": { "post": { "summary": "Drop ready and delayed messages.", "parameters": [queue_param()],
                "responses": { "200": ok_json("Count dropped.", json!({ "type": "object", "properties": { "purged": { "type": "integer" } } })), "404": error_response("Unknown queue.") } } }
        },
        "components": { "schemas": {
            "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": {
                "code": { "type": "string", "enum": ["bad_request", "unauthorized", "forbidden", "not_found", "conflict", "too_large", "busy", "internal"] },
                "message": { "type": "string" } } } } },
            "QueueConfig": { "type": "object", "additionalProperties": false, "properties": {
                "max_depth": { "type": "integer", "default": 1000000 }, "max_bytes": { "type": "integer", "default": 1073741824 },
                "max_latency_ms": { "type": ["integer", "null"] }, "lease_ms": { "type": "integer", "default": 30000 },
                "max_attempts": { "type": "integer", "default": 5 }, "backoff_base_ms": { "type": "integer", "default": 1000 },
                "backoff_max_ms": { "type": "integer", "default": 300000 }, "dead_letter_queue": { "type": ["string", "null"] },
                "dedup_window_ms": { "type": "integer", "default": 300000 }, "ordered_by_key": { "type": "boolean", "default": false } } },
            "QueueStats": { "type": "object", "properties": {
                "name": { "type": "string" }, "ready": { "type": "integer" }, "in_flight": { "type": "integer" }, "delayed": { "type": "integer" },
                "total": { "type": "integer" }, "bytes": { "type": "integer" }, "disk_bytes": { "type": "integer" }, "max_depth": { "type": "integer" },
                "above_warning": { "type": "boolean" }, "counters": { "type": "object" } } },
            "MessageIn": { "type": "object", "additionalProperties": false, "properties": {
                "body": { "type": "string" }, "body_base64": { "type": "string" }, "id": { "type": "string", "maxLength": 128 },
                "key": { "type": "string" }, "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                "delay_ms": { "type": "integer", "minimum": 0 }, "priority": { "type": "integer", "minimum": 0, "maximum": 9 } } },
            "Delivery": { "type": "object", "properties": {
                "id": { "type": "string" }, "receipt": { "type": "string" }, "body_base64": { "type": "string" }, "body": { "type": "string" },
                "key": { "type": "string" }, "headers": { "type": "object" }, "attempt": { "type": "integer" }, "priority": { "type": "integer" },
                "enqueued_at": { "type": "string", "format": "date-time" }, "enqueued_at_ms": { "type": "integer" } } }
        } }
    })
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(
        DOC.get_or_init(|| {
            let mut doc = document();
            if let (Some(paths), Value::Object(more)) =
                (doc["paths"].as_object_mut(), super::tasks::openapi_paths())
            {
                paths.extend(more);
            }
            doc
        })
        .clone(),
    )
}
