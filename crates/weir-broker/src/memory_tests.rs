//! Measures the index's memory per queued message with a counting allocator (this thread only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crate::core::{key_hash, NewEntry, QueueCore};
use crate::dedup::hash_id;
use crate::rng::Rng;
use crate::QueueConfig;

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| l.set(l.get() + layout.size() as i64));
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as i64));
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> i64 {
    LIVE.with(Cell::get)
}

const N: u64 = 200_000;

fn per_message(config: QueueConfig, keyed: bool, client_ids: bool) -> i64 {
    let before = live();
    let mut c = QueueCore::new(config, false, Rng::new(1));
    for o in 0..N {
        let key = (o % 1000).to_le_bytes();
        c.add_pending(NewEntry {
            offset: o,
            ready_at_ms: 0,
            size: 100,
            key_hash: if keyed { key_hash(Some(&key)) } else { 0 },
            priority: 0,
        });
        if client_ids {
            c.dedup.insert(hash_id(&format!("client-id-{o}")), 1_000);
        }
    }
    c.promote_durable(N, 0);
    let used = live() - before;
    drop(c);
    used / N as i64
}

#[test]
fn bytes_per_queued_message() {
    let plain = per_message(QueueConfig::default(), false, false);
    let full = per_message(
        QueueConfig {
            ordered_by_key: true,
            ..QueueConfig::default()
        },
        true,
        true,
    );
    println!("index bytes per queued message: plain {plain}, ordered+keyed+client id {full}");
    assert!(plain <= 60, "plain message costs {plain} bytes");
    assert!(
        full <= 120,
        "keyed message with a client id costs {full} bytes"
    );
}
