//! Cost of choosing an endpoint in the service registry: 3 and 100 endpoints, each balancing
//! strategy, with and without the breaker outcome; and a whole `call` with a no-op closure.
// criterion_group! generates undocumented public items.
#![allow(missing_docs)]
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use steadfast_service_registry::{Balance, Registry, ServiceConfig};

fn service(name: &str, endpoints: usize, balance: Balance) -> ServiceConfig {
    ServiceConfig::builder(name)
        .endpoints((0..endpoints).map(|i| format!("http://10.0.{}.{}:8080", i / 250, i % 250)))
        .balance(balance)
        .build()
        .expect("valid service")
}

fn registry(c: &mut Criterion) {
    let mut group = c.benchmark_group("registry");
    let strategies = [
        ("round_robin", Balance::RoundRobin),
        ("weighted_round_robin", Balance::WeightedRoundRobin),
        ("p2c", Balance::P2cLeastPending),
    ];
    for endpoints in [3usize, 100] {
        let registry = Registry::new();
        for (name, balance) in strategies {
            registry
                .register(service(name, endpoints, balance))
                .expect("registered");
        }
        for (name, _) in strategies {
            // Select and drop the lease: lookup, eligibility of every endpoint, balancing, permit.
            group.bench_with_input(
                BenchmarkId::new(format!("select_{name}"), endpoints),
                &name,
                |b, name| b.iter(|| drop(black_box(registry.select(name).expect("endpoint")))),
            );
        }
        // Select and record a success on the breaker (what one call adds besides its I/O).
        group.bench_with_input(
            BenchmarkId::new("select_and_record_p2c", endpoints),
            &"p2c",
            |b, name| b.iter(|| registry.select(name).expect("endpoint").success()),
        );
    }

    // A whole `call` (retry loop, timeout, breaker, balancing) around a closure that does nothing.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let registry = Registry::new();
    registry
        .register(service("svc", 3, Balance::P2cLeastPending))
        .expect("registered");
    group.bench_function(BenchmarkId::new("call_noop_p2c", 3), |b| {
        b.iter(|| {
            rt.block_on(registry.call("svc", |endpoint| async move {
                Ok::<_, std::io::Error>(black_box(endpoint.get_weight()))
            }))
            .expect("call")
        })
    });
    group.finish();
}

criterion_group!(benches, registry);
criterion_main!(benches);
