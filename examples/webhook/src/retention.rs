//! Retention: what the service deletes, and when.
//!
//! - `done` queue rows after the dedup window (`storage.dedup_window_seconds`, 7 days: Meta's
//!   retry window): while a done row is kept, its key refuses redeliveries of its message;
//!   dead letters after 30 days;
//! - conversations idle for longer than `conversation.retention_days` (default 30): they hold
//!   message bodies keyed by full phone numbers, so this is the service's personal-data
//!   retention. A user who writes again after that starts a new conversation.
//!
//! Every instance runs the loop; each step is safe to run concurrently with itself.

use std::sync::Arc;
use std::time::Duration;

use steadfast_dlq::Queue;
use steadfast_state_machine::SnapshotStore;
use tokio::sync::watch;

/// How often old rows are pruned.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(600);

/// What the retention loop prunes.
pub struct Retained {
    /// The queue (done and dead rows).
    pub queue: Arc<dyn Queue>,
    /// How long `done` rows are kept (the de-duplication window).
    pub done_retention: Duration,
    /// Conversations.
    pub conversations: Arc<dyn SnapshotStore>,
    /// How long a conversation may stay idle.
    pub conversation_retention: Duration,
}

/// Conversations removed per store call: small batches keep each delete short.
const CONVERSATION_PRUNE_BATCH: usize = 500;

impl Retained {
    /// Removes conversations idle for longer than the retention: they hold message bodies
    /// keyed by phone numbers, personal data the service must not keep forever.
    /// `now` is a parameter so that tests can look a month ahead without waiting.
    pub async fn prune_conversations(&self, now: chrono::DateTime<chrono::Utc>) -> u64 {
        let Ok(retention) = chrono::Duration::from_std(self.conversation_retention) else {
            return 0;
        };
        let cutoff = now - retention;
        let mut removed = 0;
        loop {
            match self
                .conversations
                .prune_idle(cutoff, CONVERSATION_PRUNE_BATCH)
                .await
            {
                Ok(n) => {
                    removed += n;
                    if n < CONVERSATION_PRUNE_BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "conversation retention failed");
                    break;
                }
            }
        }
        if removed > 0 {
            metrics::counter!(crate::metrics::CONVERSATIONS_PRUNED).increment(removed);
            tracing::info!(removed, "idle conversations removed (retention)");
        }
        removed
    }
}

/// Retention, every 10 minutes: done and dead queue rows, and idle conversations. Safe to run
/// in every instance at once.
pub async fn run(retained: Retained, mut shutdown: watch::Receiver<bool>) {
    let retention = steadfast_dlq::Retention {
        done: retained.done_retention,
        ..steadfast_dlq::Retention::default()
    };
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match retained.queue.prune(&retention).await {
                    Ok(p) => tracing::debug!(done = p.done, dead = p.dead, "queue pruned"),
                    Err(e) => tracing::warn!(error = %e, "queue prune failed"),
                }
                retained.prune_conversations(chrono::Utc::now()).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use steadfast_dlq::MemoryQueue;
    use steadfast_state_machine::MemorySnapshots;

    use super::*;

    #[tokio::test]
    async fn conversations_are_kept_within_the_retention_and_removed_after() {
        let conversations = Arc::new(MemorySnapshots::new());
        let day = chrono::Duration::days(1);
        for (key, n) in [("250788000001", 1), ("250788000002", 2)] {
            conversations
                .save(key, 0, &serde_json::json!({ "n": n }), None)
                .await
                .unwrap();
        }
        let retained = Retained {
            queue: Arc::new(MemoryQueue::new()),
            done_retention: Duration::from_secs(7 * 24 * 3600),
            conversations: conversations.clone(),
            conversation_retention: Duration::from_secs(30 * 24 * 3600),
        };
        let now = chrono::Utc::now();
        // 29 days on: both are still within the retention.
        assert_eq!(retained.prune_conversations(now + day * 29).await, 0);
        assert_eq!(conversations.len(), 2);
        // 31 days on: both have been idle for longer than 30 days.
        assert_eq!(retained.prune_conversations(now + day * 31).await, 2);
        assert!(conversations.is_empty());
    }

    #[tokio::test]
    async fn many_idle_conversations_go_in_batches() {
        let conversations = Arc::new(MemorySnapshots::new());
        let n = CONVERSATION_PRUNE_BATCH * 2 + 7;
        for i in 0..n {
            conversations
                .save(&format!("2507880{i:05}"), 0, &serde_json::json!(i), None)
                .await
                .unwrap();
        }
        let retained = Retained {
            queue: Arc::new(MemoryQueue::new()),
            done_retention: Duration::from_secs(7 * 24 * 3600),
            conversations: conversations.clone(),
            conversation_retention: Duration::from_secs(24 * 3600),
        };
        let later = chrono::Utc::now() + chrono::Duration::days(2);
        assert_eq!(retained.prune_conversations(later).await, n as u64);
        assert!(conversations.is_empty());
    }
}
