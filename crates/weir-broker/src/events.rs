//! The broker's event buffer: bounded, oldest dropped first, every event also logged.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::BrokerEvent;

/// Most events kept between two drains.
pub(crate) const MAX_EVENTS: usize = 1024;

/// A shared, bounded event buffer.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventSink(Arc<Mutex<VecDeque<BrokerEvent>>>);

impl EventSink {
    pub(crate) fn push(&self, event: BrokerEvent) {
        match &event {
            BrokerEvent::BoundWarning {
                queue,
                bound,
                above,
                value,
                limit,
            } => {
                if *above {
                    tracing::warn!(queue = %queue, bound, value, limit, "queue above 70% of a bound");
                } else {
                    tracing::info!(queue = %queue, bound, value, limit, "queue back below 70% of a bound");
                }
            }
        }
        let mut q = self.0.lock();
        if q.len() >= MAX_EVENTS {
            q.pop_front();
        }
        q.push_back(event);
    }

    pub(crate) fn drain(&self) -> Vec<BrokerEvent> {
        self.0.lock().drain(..).collect()
    }
}
