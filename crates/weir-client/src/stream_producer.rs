//! [`StreamProducer`]: appends single records in batches (the [`crate::Producer`]'s batching
//! loop, sending `Append`).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::batcher::{self, Entry, Sink};
use crate::{Client, ClientError, PartitionOffset, ProducerOptions, Record};

/// A client bound to a stream: the [`Sink`] of a stream producer's batches.
#[derive(Clone, Debug)]
struct Appender {
    client: Client,
    stream: Arc<str>,
}

impl Sink for Appender {
    type Item = Record;
    type Out = PartitionOffset;

    fn encoded_len(item: &Record) -> usize {
        item.encoded_len()
    }

    async fn send(&self, items: Vec<Record>) -> Result<Vec<PartitionOffset>, ClientError> {
        self.client.append(&self.stream, items).await
    }

    fn describe(&self) -> String {
        format!("stream {}", self.stream)
    }
}

/// Appends records to one stream in batches. [`StreamProducer::send`] resolves once the record
/// is durable, with the partition and offset it got; batches fill to `batch_size` /
/// `batch_bytes` or leave after `linger` ([`ProducerOptions`]), and `busy` refusals are retried
/// with backoff. With `max_in_flight_batches` above 1, records without a key may land in a
/// different order than sent; records of one key keep their order only with 1.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::ClientError> {
/// use weir_client::{Client, ProducerOptions, Record};
///
/// let client = Client::connect("127.0.0.1:7400").await?;
/// let producer = client.stream_producer("clicks", ProducerOptions::default());
/// let at = producer.send(Record::new("click").key("user-7")).await?;
/// println!("partition {} offset {}", at.partition, at.offset);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct StreamProducer {
    stream: Arc<str>,
    tx: mpsc::Sender<Entry<Appender>>,
}

impl StreamProducer {
    pub(crate) fn new(client: Client, stream: &str, options: ProducerOptions) -> StreamProducer {
        let stream: Arc<str> = Arc::from(stream);
        let tx = batcher::start(
            Appender {
                client,
                stream: stream.clone(),
            },
            options,
        );
        StreamProducer { stream, tx }
    }

    /// The stream this producer appends to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Queues `record` for the next batch and waits until it is durable.
    pub async fn send(&self, record: Record) -> Result<PartitionOffset, ClientError> {
        batcher::send::<Appender>(&self.tx, record).await
    }
}

impl Client {
    /// A batching producer for `stream` (see [`StreamProducer`]).
    pub fn stream_producer(&self, stream: &str, options: ProducerOptions) -> StreamProducer {
        StreamProducer::new(self.clone(), stream, options)
    }
}
