//! Integrity log benches: appends/s through the integrity service's append path, next to a raw
//! redb batch-insert ceiling measured in the same run (before and after the appends, to show
//! drift on a shared machine); proofs and roots at 1,000,000 entries; checkpoint signing.
//!
//! The append paths measured, each `APPENDS` events per iteration into one growing log, with the
//! checkpointer signing every `integrity.checkpoint_interval_ms` as in a running service:
//! - `service_batches_8x500`: 8 producers each delivering batches of 500 through the in-process
//!   `IntegrityClient` (`AuditSink::deliver`), as the services' outbox relays do (500 per round);
//! - `service_batches_1x4096`: one producer delivering batches of 4,096, as the decision writer;
//! - `service_single_1000_tasks`: 1,000 tasks each appending one event at a time
//!   (`IntegrityService::append` with one event), waiting for each before the next.
//!
//! After the group a summary prints each path's appends/s (all iterations criterion ran, warm-up
//! included) and its ratio to the mean of the two raw ceilings.
//!
//! `nice -n 19 cargo bench --bench integrity`

use std::sync::Mutex;
use std::time::{Duration, Instant};

use acgs::config::Config;
use acgs::kernel::audit::AuditSink;
use acgs::services::integrity::IntegrityService;
use acgs::services::integrity::log::{AuditEvent, Log};
use acgs::services::integrity::note::{Checkpoint, NoteSigner};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;

/// Appends per measured iteration of the throughput benches.
const APPENDS: u64 = 20_000;
/// Concurrent appending tasks of the single-append bench.
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

/// Elements and time of every iteration of one bench, for the summary.
#[derive(Default)]
struct Tally(Mutex<Vec<(String, u64, Duration)>>);

impl Tally {
    fn add(&self, name: &str, elements: u64, time: Duration) {
        let mut rows = self.0.lock().expect("tally");
        match rows.iter_mut().find(|r| r.0 == name) {
            Some(row) => {
                row.1 += elements;
                row.2 += time;
            }
            None => rows.push((name.to_string(), elements, time)),
        }
    }

    fn print(&self) {
        let rows = self.0.lock().expect("tally");
        let rate = |r: &(String, u64, Duration)| r.1 as f64 / r.2.as_secs_f64();
        let raw: Vec<f64> = rows.iter().filter(|r| r.0.starts_with("redb_raw")).map(rate).collect();
        let ceiling = raw.iter().sum::<f64>() / raw.len().max(1) as f64;
        eprintln!(
            "\nintegrity appends/s (every iteration criterion ran; ratio to the mean raw ceiling {ceiling:.0}/s):"
        );
        for r in rows.iter() {
            eprintln!("  {:<28} {:>9.0}/s  ratio {:.3}  ({} appends)", r.0, rate(r), rate(r) / ceiling, r.1);
        }
    }
}

/// Events `base .. base + APPENDS` split among `producers` in batches of `batch`.
fn batches(base: u64, producers: u64, batch: usize) -> Vec<Vec<Vec<AuditEvent>>> {
    (0..producers)
        .map(|p| {
            let mine: Vec<AuditEvent> = (p..APPENDS).step_by(producers as usize).map(|i| event(base + i)).collect();
            mine.chunks(batch).map(<[AuditEvent]>::to_vec).collect()
        })
        .collect()
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let tally = Tally::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::defaults_only();
    config.data_dir = dir.path().to_path_buf();
    let service = IntegrityService::start(&config).expect("start the integrity service");
    let checkpointer = {
        let _in_runtime = rt.enter();
        service.spawn_checkpointer()
    };
    let sink = service.client();
    let mut next = 0u64;

    // The ceiling: the same number of leaves (same bytes) inserted straight into one redb table,
    // in large durable write transactions.
    let raw_dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(raw_dir.path().join("raw.redb")).expect("raw db");
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("entries");
    let mut raw_next = 0u64;
    let mut raw = |name: &str, b: &mut criterion::Bencher| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = raw_next;
                raw_next += APPENDS;
                let leaves: Vec<Vec<u8>> = (0..APPENDS).map(|i| event(base + i).leaf_bytes().expect("leaf")).collect();
                let start = Instant::now();
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
                total += start.elapsed();
            }
            tally.add(name, iters * APPENDS, total);
            total
        })
    };

    let mut g = c.benchmark_group("integrity_append");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(APPENDS));
    g.bench_function("redb_raw_batch_insert", |b| raw("redb_raw_batch_insert", b));

    for (producers, batch) in [(8u64, 500usize), (1, 4096)] {
        let name = format!("service_batches_{producers}x{batch}");
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let work = batches(next, producers, batch);
                    next += APPENDS;
                    let start = Instant::now();
                    rt.block_on(async {
                        let handles: Vec<_> = work
                            .into_iter()
                            .map(|mine| {
                                let sink = sink.clone();
                                tokio::spawn(async move {
                                    for batch in &mine {
                                        sink.deliver(batch).await.expect("deliver");
                                    }
                                })
                            })
                            .collect();
                        for h in handles {
                            h.await.expect("producer");
                        }
                    });
                    total += start.elapsed();
                }
                tally.add(&name, iters * APPENDS, total);
                total
            })
        });
    }

    g.bench_function(format!("service_single_{TASKS}_tasks"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let work = batches(next, TASKS, 1);
                next += APPENDS;
                let start = Instant::now();
                rt.block_on(async {
                    let handles: Vec<_> = work
                        .into_iter()
                        .map(|mine| {
                            let service = service.clone();
                            tokio::spawn(async move {
                                for one in &mine {
                                    service.append(one).await.expect("append");
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
            tally.add(&format!("service_single_{TASKS}_tasks"), iters * APPENDS, total);
            total
        })
    });
    g.bench_function("redb_raw_batch_insert_again", |b| raw("redb_raw_batch_insert_again", b));
    g.finish();
    checkpointer.abort();
    tally.print();
    let cp = service.checkpoint();
    eprintln!("log size {}, latest checkpoint signed at size {}", service.log().size().expect("size"), cp.size);
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
    let took = start.elapsed();
    eprintln!(
        "built a log of {MILLION} entries with Log::append_batch of 10,000 in {took:.1?} ({:.0} appends/s)",
        MILLION as f64 / took.as_secs_f64()
    );

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
