//! The e-commerce order service of the outbox example: places orders, and in the SAME PostgreSQL
//! transaction writes the "process payment" event into the outbox. Either both the order and its
//! event exist, or neither does.
//!
//! ```text
//! weir serve &                                              # Weir on 127.0.0.1:7480
//! cargo run -p weir-outbox --example order_service -- --orders 20
//! cargo run -p weir-outbox --example relay                  # or: weir outbox relay --database-url …
//! cargo run -p weir-outbox --example payment_worker -- --count 16
//! ```
//!
//! Every fifth order fails after its event was written (a simulated stock check): its
//! transaction rolls back, and its event never reaches Weir.

use anyhow::Context as _;
use clap::Parser;
use serde_json::json;
use weir_outbox::{schema, Message, TableName};

#[derive(Debug, Parser)]
struct Args {
    /// The shop's PostgreSQL database.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "host=127.0.0.1 user=postgres dbname=test"
    )]
    database_url: String,
    /// Weir's HTTP address (the payments queue is created there).
    #[arg(long, env = "WEIR_URL", default_value = "http://127.0.0.1:7480")]
    weir_url: String,
    /// How many orders to place.
    #[arg(long, default_value_t = 10)]
    orders: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut db = weir_outbox::pg::connect(&args.database_url)
        .await
        .context("connecting to PostgreSQL")?;
    // Set-up, idempotent: the outbox table (= `weir outbox init`), the shop's table, the queue.
    schema::migrate_postgres(&db, &TableName::default()).await?;
    db.batch_execute(
        "CREATE TABLE IF NOT EXISTS orders (
             id          BIGSERIAL PRIMARY KEY,
             customer    TEXT NOT NULL,
             amount_cents BIGINT NOT NULL,
             status      TEXT NOT NULL
         )",
    )
    .await?;
    let response = reqwest::Client::new()
        .put(format!("{}/v1/queues/payments", args.weir_url))
        .json(&json!({}))
        .send()
        .await
        .context("creating the payments queue in Weir (is `weir serve` running?)")?;
    anyhow::ensure!(
        response.status().is_success(),
        "creating the payments queue: {}",
        response.status()
    );

    for n in 1..=args.orders {
        let customer = format!("customer-{}", n % 3);
        let amount_cents = 1000 + i64::from(n) * 125;
        let mut tx = db.transaction().await?;
        let order_id: i64 = tx
            .query_one(
                "INSERT INTO orders (customer, amount_cents, status) VALUES ($1, $2, 'Placed') RETURNING id",
                &[&customer, &amount_cents],
            )
            .await?
            .get(0);
        let event = json!({
            "type": "process_payment",
            "order_id": order_id,
            "customer": customer,
            "amount_cents": amount_cents,
        });
        // Keyed by customer: one customer's payments reach the worker in order.
        let event_id = weir_outbox::pg::enqueue(
            &mut tx,
            "payments",
            Message::new(event.to_string())
                .key(customer.clone())
                .header("type", "process_payment")
                .header("content-type", "application/json"),
        )
        .await?;
        if n % 5 == 0 {
            tx.rollback().await?;
            println!("order {order_id} failed its stock check: rolled back, event {event_id} is gone with it");
        } else {
            tx.commit().await?;
            println!("order {order_id} placed for {customer} ({amount_cents} cents), event {event_id} in the outbox");
        }
    }
    Ok(())
}
