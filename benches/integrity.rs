//! Integrity log benches: appends/s through `Log::append` from many concurrent tasks, next to a
//! raw redb batch-insert ceiling measured in the same run; proofs and roots at 1,000,000 entries;
//! checkpoint signing.
//!
//! `nice -n 19 cargo bench --bench integrity`

use std::time::{Duration, Instant};

use acgs::services::integrity::log::{AuditEvent, Log};
use acgs::services::integrity::note::{Checkpoint, NoteSigner};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;

/// Appends per measured iteration of the throughput benches.
const APPENDS: u64 = 20_000;
/// Concurrent appending tasks.
const TASKS: u64 = 1_000;
const MILLION: u64 = 1_000_000;

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::from_u128(u128::from(i) | (0x4000 << 64)).to_string(),
        service: "auth".into(),
        kind: "auth.login.failure".into(),
        subject: format!("user:{}", i % 5_000),
        actor: format!("client:{}", i % 50),
        at_ms: 1_700_000_000_000 + i as i64,
        data: serde_json::json!({"ip": "10.0.0.1", "reason": "bad password", "attempt": i % 7}),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open log");
    let mut next = 0u64;

    let mut g = c.benchmark_group("integrity_append");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(APPENDS));
    g.bench_function(format!("log_append_{TASKS}_tasks"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = next;
                next += APPENDS;
                let events: Vec<Vec<AuditEvent>> = (0..TASKS)
                    .map(|t| (t..APPENDS).step_by(TASKS as usize).map(|i| event(base + i)).collect())
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    let handles: Vec<_> = events
                        .into_iter()
                        .map(|evs| {
                            let log = log.clone();
                            tokio::spawn(async move {
                                for e in &evs {
                                    log.append(e).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("task");
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });

    // The ceiling: the same number of leaves (same bytes) inserted straight into one redb table,
    // in large durable write transactions.
    let raw_dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(raw_dir.path().join("raw.redb")).expect("raw db");
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("entries");
    let mut raw_next = 0u64;
    g.bench_function("redb_raw_batch_insert", |b| {
        b.iter_batched(
            || {
                let base = raw_next;
                raw_next += APPENDS;
                (base, (0..APPENDS).map(|i| event(base + i).leaf_bytes().expect("leaf")).collect::<Vec<_>>())
            },
            |(base, leaves)| {
                for (c, chunk) in leaves.chunks(5_000).enumerate() {
                    let txn = db.begin_write().expect("write");
                    {
                        let mut t = txn.open_table(table).expect("table");
                        for (j, leaf) in chunk.iter().enumerate() {
                            t.insert(base + (c * 5_000 + j) as u64, leaf.as_slice()).expect("insert");
                        }
                    }
                    txn.commit().expect("commit");
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    drop(log);
}

fn proofs(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open log");
    let start = Instant::now();
    rt.block_on(async {
        for base in (0..MILLION).step_by(10_000) {
            let batch: Vec<AuditEvent> = (base..base + 10_000).map(event).collect();
            log.append_batch(&batch).await.expect("append batch");
        }
    });
    eprintln!("built a log of {MILLION} entries in {:.1?}", start.elapsed());

    let mut g = c.benchmark_group("integrity_1m");
    let mut i = 0u64;
    g.bench_function("inclusion_proof", |b| {
        b.iter(|| {
            i = (i + 7_919) % MILLION;
            log.inclusion_proof(i, MILLION).expect("proof")
        })
    });
    let mut j = 0u64;
    g.bench_function("inclusion_proof_older_tree", |b| {
        b.iter(|| {
            j = (j + 7_919) % 700_001;
            log.inclusion_proof(j, 700_001).expect("proof")
        })
    });
    let mut k = 1u64;
    g.bench_function("consistency_proof", |b| {
        b.iter(|| {
            k = (k + 104_729) % MILLION;
            log.consistency_proof(k, MILLION).expect("proof")
        })
    });
    g.bench_function("entry", |b| {
        b.iter(|| {
            i = (i + 7_919) % MILLION;
            log.entry(i).expect("entry")
        })
    });
    g.bench_function("head", |b| b.iter(|| log.head().expect("head")));
    let signer = NoteSigner::new("bench.example/log", SigningKey::from_bytes(&[5; 32])).expect("signer");
    g.bench_function("sign_checkpoint", |b| {
        b.iter(|| {
            let (size, root) = log.head().expect("head");
            signer.sign_checkpoint(&Checkpoint::new("bench.example/log", size, root)).expect("sign")
        })
    });
    g.finish();
    let start = Instant::now();
    let v = log.verify_all().expect("verify");
    eprintln!("verify_all of {} entries: {:.1?}", v.size, start.elapsed());
}

criterion_group!(benches, appends, proofs);
criterion_main!(benches);
