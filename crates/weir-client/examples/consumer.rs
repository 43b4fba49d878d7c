//! Consumes messages with a credit-based subscription, acking each.
//!
//! Run `weir serve` first, then: `cargo run -p weir-client --example consumer -- [ADDR] [QUEUE]`
//! (defaults: 127.0.0.1:7400, `demo`). Stops after 5 s without a message.

use std::time::Duration;

use weir_client::{Client, ClientError, ConsumerOptions};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7400".to_string());
    let queue = args.next().unwrap_or_else(|| "demo".to_string());

    let client = Client::connect(addr.as_str()).await?;
    let options = ConsumerOptions {
        prefetch: 128,
        ..ConsumerOptions::default()
    };
    let mut consumer = client.subscribe(&queue, options).await?;
    let mut received = 0u64;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await;
        let Ok(Some(delivery)) = next else { break };
        let delivery = delivery?;
        if received < 5 {
            println!(
                "{} (attempt {}): {}",
                delivery.id,
                delivery.attempt,
                delivery.body_str().unwrap_or("<binary>")
            );
        }
        delivery.ack().await?;
        received += 1;
    }
    println!("received and acked {received} messages");
    consumer.close().await
}
