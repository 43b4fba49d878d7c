//! Publishes messages through a batching producer.
//!
//! Run `weir serve` first, then: `cargo run -p weir-client --example producer -- [ADDR] [QUEUE] [COUNT]`
//! (defaults: 127.0.0.1:7400, `demo`, 1000).

use std::time::Instant;

use weir_client::{Client, ClientError, Message, ProducerOptions, QueueOptions};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7400".to_string());
    let queue = args.next().unwrap_or_else(|| "demo".to_string());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);

    let client = Client::connect(addr.as_str()).await?;
    client.create_queue(&queue, QueueOptions::default()).await?;
    let producer = client.producer(&queue, ProducerOptions::default());

    let started = Instant::now();
    let mut sends = Vec::with_capacity(count);
    for i in 0..count {
        let producer = producer.clone();
        sends.push(tokio::spawn(async move {
            let message = Message::new(format!("hello {i}")).id(format!("demo-{i}"));
            producer.send(message).await
        }));
    }
    let mut duplicates = 0;
    for send in sends {
        match send.await {
            Ok(Ok(published)) => duplicates += usize::from(published.duplicate),
            Ok(Err(e)) => return Err(e),
            Err(e) => eprintln!("send task failed: {e}"),
        }
    }
    println!(
        "{count} messages confirmed durable in {:?} ({duplicates} duplicates)",
        started.elapsed()
    );
    Ok(())
}
