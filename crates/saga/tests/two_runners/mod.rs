//! The two-runner scenario, shared by the Postgres and SQLite tests: two runners on two stores
//! over one database (two pools, as two processes would have) recover one set of sagas together
//! and never run the same saga at once; sagas complete or compensate through the shared log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use steadfast_saga::{
    Created, ListFilter, NewSaga, RunnerConfig, Saga, SagaId, SagaRunner, SagaStore, State, Step,
    StepContext, StepError,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    fail_at_c: bool,
}

#[derive(Default)]
struct Seen {
    in_flight: HashMap<String, usize>,
    overlaps: Vec<String>,
    runs: HashMap<(String, String), usize>,
}

fn step(name: &'static str, seen: Arc<Mutex<Seen>>) -> Step<Job> {
    let undo = seen.clone();
    Step::new(name, move |ctx: StepContext<Job>| {
        let seen = seen.clone();
        async move {
            let id = ctx.saga_id().to_string();
            {
                let mut s = seen.lock();
                let n = s.in_flight.entry(id.clone()).or_default();
                *n += 1;
                if *n > 1 {
                    s.overlaps.push(id.clone());
                }
                *s.runs.entry((id.clone(), name.to_owned())).or_default() += 1;
            }
            // Give the other runner every chance to interleave.
            tokio::task::yield_now().await;
            *seen.lock().in_flight.entry(id).or_default() -= 1;
            if name == "c" && ctx.input().fail_at_c {
                return Err(StepError::permanent("declined"));
            }
            Ok(ctx.idempotency_key().to_owned())
        }
    })
    .compensate(move |ctx: StepContext<Job>, key: String| {
        let undo = undo.clone();
        async move {
            assert_eq!(key, ctx.idempotency_key());
            *undo
                .lock()
                .runs
                .entry((ctx.saga_id().to_string(), format!("~{}", ctx.step())))
                .or_default() += 1;
            Ok(())
        }
    })
    .build()
}

fn saga(seen: &Arc<Mutex<Seen>>) -> Saga<Job> {
    Saga::builder("jobs")
        .step(step("a", seen.clone()))
        .step(step("b", seen.clone()))
        .step(step("c", seen.clone()))
        .build()
        .unwrap()
}

/// Runs the scenario on `stores`, two stores over one fresh, migrated database.
pub async fn never_share_a_saga(stores: [Arc<dyn SagaStore>; 2]) {
    const SAGAS: usize = 40;
    for i in 0..SAGAS {
        let created = stores[0]
            .create(
                NewSaga {
                    id: SagaId::new(format!("job-{i:02}")).unwrap(),
                    name: "jobs".to_owned(),
                    version: 1,
                    input: serde_json::json!({ "fail_at_c": i % 3 == 0 }),
                },
                "seed",
                // Lapsed at once: the recovery loops pick them all up.
                Duration::ZERO,
            )
            .await
            .unwrap();
        assert!(matches!(created, Created::New(_)));
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let runner = SagaRunner::new(
            saga(&seen),
            store.clone(),
            RunnerConfig::builder()
                .owner(format!("runner-{i}"))
                .claim_batch(3)
                .build()
                .unwrap(),
        );
        tasks.push(tokio::spawn(async move {
            let mut resumed = 0;
            loop {
                let n = runner.recover_once().await.unwrap();
                if n == 0 {
                    return resumed;
                }
                resumed += n;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, SAGAS, "every saga claimed exactly once");
    let seen = std::mem::take(&mut *seen.lock());
    assert!(seen.overlaps.is_empty(), "ran at once: {:?}", seen.overlaps);
    for i in 0..SAGAS {
        let id = format!("job-{i:02}");
        for step in ["a", "b", "c"] {
            assert_eq!(
                seen.runs.get(&(id.clone(), step.to_owned())),
                Some(&1),
                "{id} {step}"
            );
        }
        let undone = if i % 3 == 0 { Some(&1) } else { None };
        for step in ["~a", "~b"] {
            assert_eq!(
                seen.runs.get(&(id.clone(), step.to_owned())),
                undone,
                "{id} {step}"
            );
        }
    }
    let completed = stores[1]
        .list(&ListFilter::state(State::Completed).limit(100))
        .await
        .unwrap();
    let compensated = stores[1]
        .list(&ListFilter::state(State::Compensated).limit(100))
        .await
        .unwrap();
    assert_eq!(completed.len() + compensated.len(), SAGAS);
    assert_eq!(compensated.len(), SAGAS.div_ceil(3));
    let log = stores[0]
        .load(&SagaId::new("job-00").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(log.compensated_steps(), ["b", "a"]);
}
