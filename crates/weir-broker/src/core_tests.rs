//! Unit tests of the state machine alone (no storage).

use super::*;
use crate::index::EntryTable;

fn core(config: QueueConfig) -> QueueCore {
    QueueCore::new(config, false, Rng::new(1))
}

fn add(c: &mut QueueCore, offset: u64, priority: u8, key: Option<&[u8]>, ready_at_ms: u64) {
    c.add_pending(NewEntry {
        offset,
        ready_at_ms,
        size: 10,
        key_hash: key_hash(key),
        priority,
    });
}

#[test]
fn pending_messages_wait_for_durability() {
    let mut c = core(QueueConfig::default());
    add(&mut c, 0, 0, None, 0);
    add(&mut c, 1, 0, None, 0);
    assert!(c.receive(0, 10, 1000).is_empty());
    c.promote_durable(1, 0);
    let got: Vec<u64> = c.receive(0, 10, 1000).iter().map(|l| l.offset).collect();
    assert_eq!(got, vec![0]);
    c.promote_durable(2, 0);
    assert_eq!(c.receive(0, 10, 1000).len(), 1);
    c.check_invariants();
}

#[test]
fn receipts_name_one_delivery() {
    let mut c = core(QueueConfig::default());
    add(&mut c, 0, 0, None, 0);
    c.promote_durable(1, 0);
    let l = c.receive(0, 1, 100)[0];
    let r = l.receipt.encode();
    assert_eq!(c.check_receipt(&r, 99), Some((0, 1)));
    assert_eq!(c.check_receipt(&r, 100), None, "expired");
    c.expire_leases(100);
    let l2 = c.receive(100, 1, 100)[0];
    assert_eq!(c.check_receipt(&r, 101), None, "stale");
    assert_eq!(c.check_receipt(&l2.receipt.encode(), 101), Some((0, 2)));
    let other = QueueCore::new(QueueConfig::default(), false, Rng::new(2));
    assert_eq!(
        other.check_receipt(&l2.receipt.encode(), 101),
        None,
        "salted"
    );
}

#[test]
fn backoff_stays_within_the_full_jitter_bound() {
    let mut c = core(QueueConfig {
        backoff_base_ms: 100,
        backoff_max_ms: 5000,
        ..QueueConfig::default()
    });
    for attempt in 1..=70u16 {
        let cap = 100u64
            .saturating_mul(1 << u32::from(attempt - 1).min(63))
            .min(5000);
        for _ in 0..50 {
            assert!(c.backoff_ms(attempt) <= cap);
        }
    }
}

#[test]
fn snapshot_entries_cover_only_durable_offsets() {
    let mut c = core(QueueConfig::default());
    for o in 0..5 {
        add(&mut c, o, 1, None, 7);
    }
    c.promote_durable(3, 10);
    let l = c.receive(10, 1, 100);
    let snap = c.snapshot_entries(3);
    assert_eq!(snap.len(), 3);
    assert_eq!(snap[0].offset, l[0].offset);
    assert_eq!((snap[0].ready_at_ms, snap[0].attempt), (0, 1));
    assert_eq!(snap[1].ready_at_ms, 7);
}

#[test]
fn restore_dead_letters_exhausted_messages() {
    let mut c = core(QueueConfig {
        max_attempts: 2,
        ..QueueConfig::default()
    });
    let mut t = EntryTable::default();
    for (o, attempt) in [(0u64, 2u16), (1, 1)] {
        t.insert(
            o,
            Entry {
                due_ms: 0,
                size: 1,
                key_hash: 0,
                attempt,
                priority: 0,
                state: State::Pending,
            },
        );
    }
    c.restore(t, 5);
    assert_eq!(c.take_dead(), vec![(0, REASON_LEASE_EXPIRED)]);
    assert_eq!(c.receive(5, 10, 100).len(), 1);
    c.check_invariants();
}

/// Random operations keep every index structure consistent with the table.
#[test]
fn random_operations_keep_the_invariants() {
    for seed in 0..20 {
        let mut rng = Rng::new(seed);
        let mut c = core(QueueConfig {
            ordered_by_key: seed % 2 == 0,
            max_attempts: 3,
            ..QueueConfig::default()
        });
        let mut now = 0u64;
        let mut next = 0u64;
        let mut leased: Vec<Leased> = Vec::new();
        for _ in 0..400 {
            match rng.up_to(7) {
                0 | 1 => {
                    let key = [b'k', rng.up_to(3) as u8];
                    let key = (rng.up_to(1) == 0).then_some(&key[..]);
                    add(
                        &mut c,
                        next,
                        rng.up_to(9) as u8,
                        key,
                        now + rng.up_to(2) * 50,
                    );
                    next += 1;
                }
                2 => {
                    c.advance(next, now);
                    leased.extend(c.receive(now, rng.up_to(3) as usize + 1, 100));
                }
                3 if !leased.is_empty() => {
                    let l = leased.swap_remove(rng.up_to(leased.len() as u64 - 1) as usize);
                    if let Some((off, _)) = c.check_receipt(&l.receipt.encode(), now) {
                        c.ack(off, now);
                    }
                }
                4 if !leased.is_empty() => {
                    let l = leased.swap_remove(rng.up_to(leased.len() as u64 - 1) as usize);
                    if let Some((off, attempt)) = c.check_receipt(&l.receipt.encode(), now) {
                        let dead = c.nack_exhausts(attempt);
                        c.nack(off, now + rng.up_to(100), dead, now);
                    }
                }
                5 => now += rng.up_to(120),
                6 => {
                    let dead: Vec<u64> = c.take_dead().into_iter().map(|(o, _)| o).collect();
                    c.finish_dead(&dead, now);
                }
                _ => {
                    let p = c.purgeable();
                    if rng.up_to(10) == 0 {
                        c.remove_all(&p, now);
                    }
                }
            }
            c.check_invariants();
        }
    }
}
