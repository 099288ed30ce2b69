//! The `QueueStore` conformance suite on every adapter.

mod suite;

use std::sync::Arc;

use steadfast_dlq::{MemoryQueue, QueueStore};

#[tokio::test]
async fn memory_queue_conforms() {
    suite::run(|config| async move {
        let store: Arc<dyn QueueStore> = Arc::new(MemoryQueue::with_config(config));
        Some((store, Box::new(()) as Box<dyn std::any::Any + Send>))
    })
    .await;
}
