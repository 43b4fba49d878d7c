//! The payment worker of the outbox example: consumes "process payment" events from Weir's
//! `payments` queue, charges (prints), marks the order `Paid` (idempotently), and acks.
//!
//! ```text
//! cargo run -p weir-outbox --example payment_worker -- --count 8
//! ```

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// The shop's PostgreSQL database (to mark orders paid).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "host=127.0.0.1 user=postgres dbname=test"
    )]
    database_url: String,
    /// Weir's HTTP address.
    #[arg(long, env = "WEIR_URL", default_value = "http://127.0.0.1:7480")]
    weir_url: String,
    /// Stop after this many payments (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = weir_outbox::pg::connect(&args.database_url)
        .await
        .context("connecting to PostgreSQL")?;
    let http = reqwest::Client::new();
    let queue = format!("{}/v1/queues/payments", args.weir_url);
    let mut seen = HashSet::new();
    let mut paid = 0usize;
    while args.count.is_none_or(|c| paid < c) {
        let response: Value = http
            .post(format!("{queue}/receive"))
            .json(&json!({ "max": 100, "wait_ms": 5000, "lease_ms": 30000 }))
            .send()
            .await
            .context("receiving from Weir (is `weir serve` running?)")?
            .error_for_status()?
            .json()
            .await?;
        let messages = response["messages"].as_array().cloned().unwrap_or_default();
        let mut receipts = Vec::new();
        for m in &messages {
            let id = m["id"].as_str().unwrap_or_default().to_owned();
            let event: Value =
                serde_json::from_str(m["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
            let order_id = event["order_id"].as_i64().unwrap_or_default();
            // Idempotent effect: a redelivery (lease expired before the ack) changes nothing.
            let changed = db
                .execute(
                    "UPDATE orders SET status = 'Paid' WHERE id = $1 AND status = 'Placed'",
                    &[&order_id],
                )
                .await?;
            let first_time = seen.insert(id.clone());
            println!(
                "message {id}: charged {} {} cents for order {order_id}{}{}",
                event["customer"].as_str().unwrap_or("?"),
                event["amount_cents"].as_i64().unwrap_or_default(),
                if changed == 1 { "" } else { " (already paid)" },
                if first_time { "" } else { " [redelivery]" },
            );
            receipts.push(m["receipt"].clone());
            paid += 1;
        }
        if !receipts.is_empty() {
            http.post(format!("{queue}/ack"))
                .json(&json!({ "receipts": receipts }))
                .send()
                .await?
                .error_for_status()?;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "{paid} payments processed, {} distinct message ids",
        seen.len()
    );
    Ok(())
}
