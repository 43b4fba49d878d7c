//! The broker-level journal (`meta`): every queue's configuration.
//!
//! ```text
//! entry    := 1 Put    name (bytes), is_dlq u8, config
//!           | 2 Delete name (bytes)
//! snapshot := version u8 = 1, count varint, (name, is_dlq u8, config)*
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use weir_store::{Durable, FsyncPolicy, Journal, Store, StoreError, StoreName};

use crate::codec::{put_bytes, put_varint, Reader};
use crate::QueueConfig;

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
        if let Some(s) = &contents.snapshot {
            let mut r = Reader::new("meta snapshot", s);
            let version = r.u8()?;
            if version != 1 {
                return Err(r.error(format!("unknown meta snapshot version {version}")));
            }
            for _ in 0..r.varint()? {
                let (name, m) = get(&mut r)?;
                queues.insert(name, m);
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
                t => return Err(r.error(format!("unknown meta entry tag {t}"))),
            }
            r.finish()?;
        }
        Ok(Meta { journal, queues })
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
        let mut out = vec![1];
        put_varint(&mut out, self.queues.len() as u64);
        for (name, m) in &self.queues {
            put(&mut out, name, m);
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
}
