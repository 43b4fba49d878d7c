//! Input checks for every public call. They run before anything changes, so invalid input changes
//! nothing.

use weir_proto::limits::{
    MAX_BATCH_MESSAGES, MAX_BODY_BYTES_CEILING, MAX_DELAY_MS, MAX_HEADERS, MAX_HEADER_NAME_BYTES,
    MAX_HEADER_VALUE_BYTES, MAX_KEY_BYTES, MAX_LEASE_MS, MAX_MESSAGE_ID_BYTES, MAX_PRIORITY,
    MAX_RECEIVE_MESSAGES, MIN_LEASE_MS,
};

use crate::{BrokerError, NewMessage};

fn invalid(m: String) -> BrokerError {
    BrokerError::InvalidArgument(m)
}

/// Checks a publish batch.
pub(crate) fn messages(messages: &[NewMessage], max_body_bytes: usize) -> Result<(), BrokerError> {
    if messages.len() > MAX_BATCH_MESSAGES {
        return Err(BrokerError::TooLarge(format!(
            "batch of {} messages exceeds the limit of {MAX_BATCH_MESSAGES}",
            messages.len()
        )));
    }
    let max_body_bytes = max_body_bytes.min(MAX_BODY_BYTES_CEILING);
    for (i, m) in messages.iter().enumerate() {
        if let Some(id) = &m.id {
            if id.is_empty() || id.len() > MAX_MESSAGE_ID_BYTES {
                return Err(invalid(format!(
                    "message {i}: id must be 1..={MAX_MESSAGE_ID_BYTES} bytes, got {}",
                    id.len()
                )));
            }
        }
        if m.key.as_ref().is_some_and(|k| k.len() > MAX_KEY_BYTES) {
            return Err(invalid(format!(
                "message {i}: key longer than {MAX_KEY_BYTES} bytes"
            )));
        }
        if m.headers.len() > MAX_HEADERS {
            return Err(invalid(format!(
                "message {i}: {} headers exceed the limit of {MAX_HEADERS}",
                m.headers.len()
            )));
        }
        for (name, value) in &m.headers {
            if name.is_empty() || name.len() > MAX_HEADER_NAME_BYTES {
                return Err(invalid(format!(
                    "message {i}: header names must be 1..={MAX_HEADER_NAME_BYTES} bytes"
                )));
            }
            if value.len() > MAX_HEADER_VALUE_BYTES {
                return Err(invalid(format!(
                    "message {i}: header {name:?} longer than {MAX_HEADER_VALUE_BYTES} bytes"
                )));
            }
        }
        if m.priority > MAX_PRIORITY {
            return Err(invalid(format!(
                "message {i}: priority {} exceeds {MAX_PRIORITY}",
                m.priority
            )));
        }
        delay(m.delay_ms)?;
        if m.body.len() > max_body_bytes {
            return Err(BrokerError::TooLarge(format!(
                "message {i}: body of {} bytes exceeds the limit of {max_body_bytes}",
                m.body.len()
            )));
        }
    }
    Ok(())
}

/// Checks a delay.
pub(crate) fn delay(delay_ms: u64) -> Result<(), BrokerError> {
    if delay_ms > MAX_DELAY_MS {
        return Err(invalid(format!(
            "delay_ms {delay_ms} exceeds {MAX_DELAY_MS}"
        )));
    }
    Ok(())
}

/// Checks a lease.
pub(crate) fn lease(lease_ms: u64) -> Result<(), BrokerError> {
    if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&lease_ms) {
        return Err(invalid(format!(
            "lease_ms {lease_ms} outside {MIN_LEASE_MS}..={MAX_LEASE_MS}"
        )));
    }
    Ok(())
}

/// Checks a receive's `max`.
pub(crate) fn receive_max(max: usize) -> Result<(), BrokerError> {
    if !(1..=MAX_RECEIVE_MESSAGES).contains(&max) {
        return Err(invalid(format!(
            "max {max} outside 1..={MAX_RECEIVE_MESSAGES}"
        )));
    }
    Ok(())
}

/// Checks a receipt batch.
pub(crate) fn receipts(receipts: &[String]) -> Result<(), BrokerError> {
    if receipts.len() > MAX_BATCH_MESSAGES {
        return Err(BrokerError::TooLarge(format!(
            "{} receipts exceed the limit of {MAX_BATCH_MESSAGES}",
            receipts.len()
        )));
    }
    Ok(())
}
