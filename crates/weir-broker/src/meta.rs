//! The broker-level journal (`meta`): every queue's, topic's, subscription's and stream's
//! configuration.
//!
//! ```text
//! entry    := 1 Put          name (bytes), is_dlq u8, config
//!           | 2 Delete       name (bytes)
//!           | 3 PutTopic     name, topic config
//!           | 4 DeleteTopic  name                     (and every subscription of it)
//!           | 5 PutSub       topic, sub, start_offset varint, queue config
//!           | 6 DeleteSub    topic, sub
//!           | 7 PutStream    name, stream config
//!           | 8 DeleteStream name
//! snapshot := version u8 = 1, count varint, (name, is_dlq u8, config)*
//!           | version u8 = 2, the same queues, then
//!             topic count varint, (name, topic config, sub count, (sub, start_offset, config)*)*,
//!             stream count varint, (name, stream config)*
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use weir_store::{Durable, FsyncPolicy, Journal, Store, StoreError, StoreName};

use crate::codec::{put_bytes, put_varint, Reader};
use crate::stream::StreamConfig;
use crate::topic::TopicConfig;
use crate::QueueConfig;

/// What the broker remembers about a topic subscription.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SubMeta {
    /// The subscription's queue behaviour.
    pub(crate) config: QueueConfig,
    /// The first offset of the topic's log this subscription receives.
    pub(crate) start_offset: u64,
}

/// What the broker remembers about a topic.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TopicMeta {
    pub(crate) config: TopicConfig,
    pub(crate) subs: BTreeMap<String, SubMeta>,
}

/// One change to the meta journal beyond queues.
#[derive(Clone, Debug)]
pub(crate) enum MetaChange {
    PutTopic(String, TopicConfig),
    DeleteTopic(String),
    PutSub(String, String, SubMeta),
    DeleteSub(String, String),
    PutStream(String, StreamConfig),
    DeleteStream(String),
}

/// What the broker remembers about a queue.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QueueMeta {
    pub(crate) config: QueueConfig,
    pub(crate) is_dlq: bool,
}

/// The meta journal and the state it describes.
#[derive(Debug)]
pub(crate) struct Meta {
    journal: Arc<dyn Journal>,
    pub(crate) queues: BTreeMap<String, QueueMeta>,
    pub(crate) topics: BTreeMap<String, TopicMeta>,
    pub(crate) streams: BTreeMap<String, StreamConfig>,
}

fn put_sub(out: &mut Vec<u8>, sub: &str, m: &SubMeta) {
    put_bytes(out, sub.as_bytes());
    put_varint(out, m.start_offset);
    m.config.encode(out);
}

fn get_sub(r: &mut Reader<'_>) -> Result<(String, SubMeta), StoreError> {
    let sub = r.string()?;
    let start_offset = r.varint()?;
    let config = QueueConfig::decode(r)?;
    Ok((
        sub,
        SubMeta {
            config,
            start_offset,
        },
    ))
}

impl MetaChange {
    fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            MetaChange::PutTopic(name, c) => {
                out.push(3);
                put_bytes(&mut out, name.as_bytes());
                c.encode(&mut out);
            }
            MetaChange::DeleteTopic(name) => {
                out.push(4);
                put_bytes(&mut out, name.as_bytes());
            }
            MetaChange::PutSub(topic, sub, m) => {
                out.push(5);
                put_bytes(&mut out, topic.as_bytes());
                put_sub(&mut out, sub, m);
            }
            MetaChange::DeleteSub(topic, sub) => {
                out.push(6);
                put_bytes(&mut out, topic.as_bytes());
                put_bytes(&mut out, sub.as_bytes());
            }
            MetaChange::PutStream(name, c) => {
                out.push(7);
                put_bytes(&mut out, name.as_bytes());
                c.encode(&mut out);
            }
            MetaChange::DeleteStream(name) => {
                out.push(8);
                put_bytes(&mut out, name.as_bytes());
            }
        }
        Bytes::from(out)
    }

    /// Decodes the body of an entry whose tag (3..=8) was read already.
    fn decode(tag: u8, r: &mut Reader<'_>) -> Result<MetaChange, StoreError> {
        Ok(match tag {
            3 => MetaChange::PutTopic(r.string()?, TopicConfig::decode(r)?),
            4 => MetaChange::DeleteTopic(r.string()?),
            5 => {
                let topic = r.string()?;
                let (sub, m) = get_sub(r)?;
                MetaChange::PutSub(topic, sub, m)
            }
            6 => MetaChange::DeleteSub(r.string()?, r.string()?),
            7 => MetaChange::PutStream(r.string()?, StreamConfig::decode(r)?),
            8 => MetaChange::DeleteStream(r.string()?),
            t => return Err(r.error(format!("unknown meta entry tag {t}"))),
        })
    }

    /// Applies the change to the in-memory maps.
    fn apply(
        self,
        topics: &mut BTreeMap<String, TopicMeta>,
        streams: &mut BTreeMap<String, StreamConfig>,
    ) {
        match self {
            MetaChange::PutTopic(name, config) => match topics.get_mut(&name) {
                Some(t) => t.config = config,
                None => {
                    topics.insert(
                        name,
                        TopicMeta {
                            config,
                            subs: BTreeMap::new(),
                        },
                    );
                }
            },
            MetaChange::DeleteTopic(name) => {
                topics.remove(&name);
            }
            MetaChange::PutSub(topic, sub, m) => {
                if let Some(t) = topics.get_mut(&topic) {
                    t.subs.insert(sub, m);
                }
            }
            MetaChange::DeleteSub(topic, sub) => {
                if let Some(t) = topics.get_mut(&topic) {
                    t.subs.remove(&sub);
                }
            }
            MetaChange::PutStream(name, c) => {
                streams.insert(name, c);
            }
            MetaChange::DeleteStream(name) => {
                streams.remove(&name);
            }
        }
    }
}

fn put(out: &mut Vec<u8>, name: &str, m: &QueueMeta) {
    put_bytes(out, name.as_bytes());
    out.push(u8::from(m.is_dlq));
    m.config.encode(out);
}

fn get(r: &mut Reader<'_>) -> Result<(String, QueueMeta), StoreError> {
    let name = r.string()?;
    let is_dlq = r.u8()? != 0;
    let config = QueueConfig::decode(r)?;
    Ok((name, QueueMeta { config, is_dlq }))
}

impl Meta {
    /// Opens and replays the meta journal.
    pub(crate) fn open(store: &dyn Store, fsync: FsyncPolicy) -> Result<Meta, StoreError> {
        let journal = store.open_journal(&StoreName::parse("meta")?, fsync)?;
        let contents = journal.recovered();
        let mut queues = BTreeMap::new();
        let mut topics = BTreeMap::new();
        let mut streams = BTreeMap::new();
        if let Some(s) = &contents.snapshot {
            let mut r = Reader::new("meta snapshot", s);
            let version = r.u8()?;
            if version != 1 && version != 2 {
                return Err(r.error(format!("unknown meta snapshot version {version}")));
            }
            for _ in 0..r.varint()? {
                let (name, m) = get(&mut r)?;
                queues.insert(name, m);
            }
            if version == 2 {
                for _ in 0..r.varint()? {
                    let name = r.string()?;
                    let config = TopicConfig::decode(&mut r)?;
                    let mut subs = BTreeMap::new();
                    for _ in 0..r.varint()? {
                        let (sub, m) = get_sub(&mut r)?;
                        subs.insert(sub, m);
                    }
                    topics.insert(name, TopicMeta { config, subs });
                }
                for _ in 0..r.varint()? {
                    let name = r.string()?;
                    streams.insert(name, StreamConfig::decode(&mut r)?);
                }
            }
            r.finish()?;
        }
        for e in &contents.entries {
            let mut r = Reader::new("meta journal entry", e);
            match r.u8()? {
                1 => {
                    let (name, m) = get(&mut r)?;
                    queues.insert(name, m);
                }
                2 => {
                    queues.remove(&r.string()?);
                }
                t => MetaChange::decode(t, &mut r)?.apply(&mut topics, &mut streams),
            }
            r.finish()?;
        }
        Ok(Meta {
            journal,
            queues,
            topics,
            streams,
        })
    }

    /// Records topic, subscription and stream changes (in order, durable together).
    pub(crate) fn change(&mut self, changes: Vec<MetaChange>) -> Result<Durable, StoreError> {
        let entries: Vec<Bytes> = changes.iter().map(MetaChange::encode).collect();
        let d = self.journal.append(&entries)?;
        for c in changes {
            c.apply(&mut self.topics, &mut self.streams);
        }
        Ok(d)
    }

    /// Records queue configurations.
    pub(crate) fn put(&mut self, items: &[(String, QueueMeta)]) -> Result<Durable, StoreError> {
        let entries: Vec<Bytes> = items
            .iter()
            .map(|(name, m)| {
                let mut out = vec![1];
                put(&mut out, name, m);
                Bytes::from(out)
            })
            .collect();
        let d = self.journal.append(&entries)?;
        for (name, m) in items {
            self.queues.insert(name.clone(), m.clone());
        }
        Ok(d)
    }

    /// Forgets a queue.
    pub(crate) fn delete(&mut self, name: &str) -> Result<Durable, StoreError> {
        let mut out = vec![2];
        put_bytes(&mut out, name.as_bytes());
        let d = self.journal.append(&[Bytes::from(out)])?;
        self.queues.remove(name);
        Ok(d)
    }

    /// Snapshots when the journal grew past `every_bytes`.
    pub(crate) fn maybe_snapshot(&self, every_bytes: u64) -> Result<bool, StoreError> {
        if self.journal.bytes_since_snapshot() <= every_bytes {
            return Ok(false);
        }
        let mut out = vec![2];
        put_varint(&mut out, self.queues.len() as u64);
        for (name, m) in &self.queues {
            put(&mut out, name, m);
        }
        put_varint(&mut out, self.topics.len() as u64);
        for (name, t) in &self.topics {
            put_bytes(&mut out, name.as_bytes());
            t.config.encode(&mut out);
            put_varint(&mut out, t.subs.len() as u64);
            for (sub, m) in &t.subs {
                put_sub(&mut out, sub, m);
            }
        }
        put_varint(&mut out, self.streams.len() as u64);
        for (name, c) in &self.streams {
            put_bytes(&mut out, name.as_bytes());
            c.encode(&mut out);
        }
        self.journal.snapshot(Bytes::from(out))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_store::memory::MemoryStore;

    #[test]
    fn replays_puts_deletes_and_snapshots() {
        let store = MemoryStore::new();
        let mut m = Meta::open(&store, FsyncPolicy::Always).expect("open");
        let a = QueueMeta {
            config: QueueConfig::default(),
            is_dlq: false,
        };
        let b = QueueMeta {
            config: QueueConfig {
                ordered_by_key: true,
                ..QueueConfig::default()
            },
            is_dlq: true,
        };
        let _ = m.put(&[("a".into(), a.clone()), ("b".into(), b.clone())]);
        let _ = m.delete("a");
        let m2 = Meta::open(&store, FsyncPolicy::Always).expect("reopen");
        assert_eq!(m2.queues.len(), 1);
        assert_eq!(m2.queues.get("b"), Some(&b));
        assert!(m2.maybe_snapshot(0).expect("snapshot"));
        let mut m3 = Meta::open(&store, FsyncPolicy::Always).expect("reopen");
        assert_eq!(m3.queues.get("b"), Some(&b));
        let _ = m3.put(&[("a".into(), a.clone())]);
        let m4 = Meta::open(&store, FsyncPolicy::Always).expect("reopen");
        assert_eq!(m4.queues.len(), 2);
    }

    #[test]
    fn topics_subscriptions_and_streams_replay_and_snapshot() {
        let store = MemoryStore::new();
        let mut m = Meta::open(&store, FsyncPolicy::Always).expect("open");
        let sub = SubMeta {
            config: QueueConfig::default(),
            start_offset: 42,
        };
        let stream = StreamConfig {
            partitions: 3,
            retention_ms: Some(5),
            retention_bytes: None,
        };
        let _ = m.change(vec![
            MetaChange::PutTopic("t".into(), TopicConfig::default()),
            MetaChange::PutSub("t".into(), "a".into(), sub.clone()),
            MetaChange::PutSub("t".into(), "b".into(), sub.clone()),
            MetaChange::DeleteSub("t".into(), "b".into()),
            MetaChange::PutTopic("gone".into(), TopicConfig::default()),
            MetaChange::DeleteTopic("gone".into()),
            MetaChange::PutStream("s".into(), stream),
            MetaChange::PutStream("x".into(), StreamConfig::default()),
            MetaChange::DeleteStream("x".into()),
        ]);
        let check = |m: &Meta| {
            assert_eq!(m.topics.len(), 1);
            assert_eq!(m.topics["t"].subs.len(), 1);
            assert_eq!(m.topics["t"].subs["a"], sub);
            assert_eq!(m.streams.len(), 1);
            assert_eq!(m.streams["s"], stream);
        };
        let m2 = Meta::open(&store, FsyncPolicy::Always).expect("reopen");
        check(&m2);
        assert!(m2.maybe_snapshot(0).expect("snapshot"));
        check(&Meta::open(&store, FsyncPolicy::Always).expect("reopen"));
    }
}
