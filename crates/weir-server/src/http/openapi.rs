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
                (doc["paths"].as_object_mut(), topic_stream_paths())
            {
                paths.extend(more);
            }
            if let (Some(paths), Value::Object(more)) =
                (doc["paths"].as_object_mut(), super::tasks::openapi_paths())
            {
                paths.extend(more);
            }
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

fn path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true,
            "schema": { "type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$" } })
}

fn params(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| {
                if *n == "partition" {
                    json!({ "name": "partition", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0 } })
                } else {
                    path_param(n)
                }
            })
            .collect(),
    )
}

fn op(summary: &str, names: &[&str], request: Option<Value>, ok: &str) -> Value {
    let mut o = json!({ "summary": summary, "parameters": params(names), "responses": {
        "200": { "description": ok, "content": { "application/json": { "schema": { "type": "object" } } } },
        "400": error_response("Bad input."), "404": error_response("Unknown object.") } });
    if let (Some(obj), Some(r)) = (o.as_object_mut(), request) {
        obj.insert("requestBody".into(), body(r));
    }
    o
}

fn receipts_body(extra: Value) -> Value {
    let mut props =
        json!({ "receipts": { "type": "array", "maxItems": 1000, "items": { "type": "string" } } });
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({ "type": "object", "required": ["receipts"], "additionalProperties": false, "properties": props })
}

/// Topics, subscriptions, streams and consumer groups (docs/topics-and-streams.md).
fn topic_stream_paths() -> Value {
    let ts = ["name", "sub"];
    let sg = ["name", "group"];
    let sgm = ["name", "group", "member"];
    let sub_config = json!({ "allOf": [{ "$ref": "#/components/schemas/QueueConfig" }], "properties": {
        "start": { "type": "string", "enum": ["now", "oldest"], "default": "now",
                   "description": "Where a new subscription starts: new messages only, or every message the topic still retains." } } });
    let messages = json!({ "type": "object", "required": ["messages"], "additionalProperties": false,
        "properties": { "messages": { "type": "array", "minItems": 1, "maxItems": 1000, "items": { "$ref": "#/components/schemas/MessageIn" } } } });
    let mut publish = op("Publish a batch once; every subscription gets a copy. 503 busy (Retry-After) when any subscription is full: none of the batch stored.", &["name"], Some(messages), "Stored, as a queue's publish.");
    publish["responses"]["503"] = error_response("Busy: a subscription is full (its name is in the message); see GET /v1/topics/{name}/subscriptions.");
    json!({
        "/v1/topics": { "get": op("List topics with every subscription's backlog.", &[], None, "Topics.") },
        "/v1/topics/{name}": {
            "put": op("Create (201) or update (200) a topic.", &["name"], Some(json!({ "type": "object", "additionalProperties": false,
                "properties": { "dedup_window_ms": { "type": "integer", "minimum": 0, "default": 300000 } } })), "The topic."),
            "get": op("A topic: counters, shared-log bounds, subscriptions' stats and the slowest subscription.", &["name"], None, "The topic."),
            "delete": op("Delete a topic and its subscriptions (204).", &["name"], None, "Deleted.")
        },
        "/v1/topics/{name}/messages": { "post": publish },
        "/v1/topics/{name}/subscriptions": { "get": op("Every subscription's queue stats (`total` is its backlog) and `slowest_subscription`.", &["name"], None, "Subscriptions.") },
        "/v1/topics/{name}/subscriptions/{sub}": {
            "put": op("Create (201) or update (200) a subscription: a queue's config plus `start`. Creates <topic>.<sub>.dlq unless dead_letter_queue is set.", &ts, Some(sub_config), "The config."),
            "get": op("A subscription's queue stats.", &ts, None, "Stats."),
            "delete": op("Delete a subscription (204).", &ts, None, "Deleted.")
        },
        "/v1/topics/{name}/subscriptions/{sub}/receive": { "post": op("As a queue's receive.", &ts, Some(json!({ "type": "object", "additionalProperties": false, "properties": {
            "max": { "type": "integer", "minimum": 1, "maximum": 1000 }, "wait_ms": { "type": "integer", "minimum": 0, "maximum": 20000 }, "lease_ms": { "type": "integer" } } })), "Deliveries.") },
        "/v1/topics/{name}/subscriptions/{sub}/ack": { "post": op("As a queue's ack.", &ts, Some(receipts_body(json!({}))), "{acked, invalid}.") },
        "/v1/topics/{name}/subscriptions/{sub}/nack": { "post": op("As a queue's nack.", &ts, Some(receipts_body(json!({ "delay_ms": { "type": "integer" } }))), "{nacked, invalid}.") },
        "/v1/topics/{name}/subscriptions/{sub}/extend": { "post": op("As a queue's extend.", &ts, Some(receipts_body(json!({ "lease_ms": { "type": "integer" } }))), "{extended, invalid}.") },
        "/v1/streams": { "get": op("List streams.", &[], None, "Streams.") },
        "/v1/streams/{name}": {
            "put": op("Create (201) or update retention (200); a different partition count is 409.", &["name"], Some(json!({ "type": "object", "additionalProperties": false, "properties": {
                "partitions": { "type": "integer", "minimum": 1, "maximum": 256, "default": 1 },
                "retention_ms": { "type": "integer", "minimum": 1 }, "retention_bytes": { "type": "integer", "minimum": 1 } } })), "The stream."),
            "get": op("A stream: config, per-partition bounds and size, groups.", &["name"], None, "The stream."),
            "delete": op("Delete a stream, its records and groups (204).", &["name"], None, "Deleted.")
        },
        "/v1/streams/{name}/records": { "post": op("Append records; partition = xxh3_64(key) % partitions (keyless: round-robin). Answered once durable.", &["name"], Some(json!({ "type": "object", "required": ["records"], "additionalProperties": false,
            "properties": { "records": { "type": "array", "minItems": 1, "maxItems": 1000, "items": { "type": "object", "additionalProperties": false, "properties": {
                "body": { "type": "string" }, "body_base64": { "type": "string" }, "key": { "type": "string" }, "headers": { "type": "object", "additionalProperties": { "type": "string" } } } } } } })),
            "{records: [{partition, offset}]}.") },
        "/v1/streams/{name}/partitions/{partition}/records": { "get": {
            "summary": "Read by offset (below the retained start: from the start) or timestamp; waits up to wait_ms for a first record (tailing).",
            "parameters": [path_param("name"), { "name": "partition", "in": "path", "required": true, "schema": { "type": "integer" } },
                { "name": "offset", "in": "query", "schema": { "type": "integer" } }, { "name": "timestamp_ms", "in": "query", "schema": { "type": "integer" } },
                { "name": "max", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
                { "name": "wait_ms", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": 20000, "default": 0 } }],
            "responses": { "200": ok_json("{records: [{offset, timestamp_ms, key?, body_base64, body?, headers}], next_offset}.", json!({ "type": "object" })),
                           "400": error_response("Bad input."), "404": error_response("Unknown stream or partition.") } } },
        "/v1/streams/{name}/groups": { "get": op("Consumer group names.", &["name"], None, "{groups}.") },
        "/v1/streams/{name}/groups/{group}": {
            "get": op("Members, generation, and per partition: owner, committed offset, end offset, lag.", &sg, None, "The group."),
            "delete": op("Forget a group and its committed offsets (204).", &sg, None, "Deleted.")
        },
        "/v1/streams/{name}/groups/{group}/members/{member}": {
            "put": op("Join (201) or refresh (200): the member's partitions and their committed offsets.", &sgm, Some(json!({ "type": "object", "additionalProperties": false,
                "properties": { "session_timeout_ms": { "type": "integer", "minimum": 100, "maximum": 300000, "default": 10000 } } })), "{generation, partitions, committed, members, session_timeout_ms}."),
            "delete": op("Leave (204); the partitions move to the others at once.", &sgm, None, "Left.")
        },
        "/v1/streams/{name}/groups/{group}/members/{member}/heartbeat": { "post": op("Keep the session alive; the current assignment. 404 once the session ended: join again.", &sgm, None, "The assignment.") },
        "/v1/streams/{name}/groups/{group}/offsets": {
            "get": op("Committed offsets and lag per partition (as GET of the group).", &sg, None, "The group."),
            "post": op("Commit offsets (the next offset to process), durable before the answer. With `member` it must own every partition and `generation` must be current, else 409.", &sg,
                Some(json!({ "type": "object", "required": ["offsets"], "additionalProperties": false, "properties": {
                    "offsets": { "type": "array", "items": { "type": "object", "properties": { "partition": { "type": "integer" }, "offset": { "type": "integer" } } } },
                    "member": { "type": "string" }, "generation": { "type": "integer" } } })), "{committed}.")
        }
    })
}
