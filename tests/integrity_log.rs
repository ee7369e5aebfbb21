//! The integrity log against an independent verifier written from RFC 9162's text
//! (`tests/common/rfc9162.rs`, not the crate's `merkle` module): proofs for random tree sizes up
//! to 10,000, refusal of corrupted proofs, dedup by event id, restart, and detection of a leaf
//! changed directly in the redb file.

use acgs::services::integrity::log::{AuditEvent, ENTRIES, Log, LogError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redb::ReadableTable;

mod common;
use common::rfc9162 as rfc;

fn event(rng: &mut StdRng, i: u64) -> AuditEvent {
    AuditEvent {
        event_id: uuid::Uuid::from_u128(rng.r#gen()).to_string(),
        service: "auth".into(),
        kind: ["auth.login.success", "auth.login.failure", "auth.user.created"][(i % 3) as usize].into(),
        subject: format!("user:{}", i % 97),
        actor: format!("user:{}", i % 13),
        at_ms: 1_700_000_000_000 + i as i64,
        data: serde_json::json!({"i": i, "ip": "127.0.0.1", "nested": {"b": [1, 2, 3], "a": null}}),
    }
}

const N: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_verify_independently_and_fail_when_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path()).unwrap();
    let mut rng = StdRng::seed_from_u64(0x1c65_9162);
    let events: Vec<AuditEvent> = (0..N).map(|i| event(&mut rng, i)).collect();

    // Fill through every path: single appends from concurrent tasks, then batches of varied sizes.
    let mut tasks = Vec::new();
    for chunk in events[..400].chunks(50) {
        let (log, chunk) = (log.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for e in &chunk {
                assert!(!log.append(e).await.unwrap().duplicate);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut at = 400usize;
    while at < N as usize {
        let len = rng.gen_range(1..1500).min(N as usize - at);
        let out = log.append_batch(&events[at..at + len]).await.unwrap();
        assert!(out.iter().all(|a| !a.duplicate));
        at += len;
    }
    assert_eq!(log.size().unwrap(), N);

    // The leaves in log order (the concurrent part may be in any order), checked entry by entry.
    let mut leaves = Vec::with_capacity(N as usize);
    let mut from = 0;
    while from < N {
        let page = log.entries(from, 1000).unwrap();
        assert!(!page.is_empty());
        for e in page {
            assert_eq!(e.index, from);
            assert_eq!(e.leaf_hash, rfc::leaf(&e.leaf), "leaf hash of entry {from}");
            leaves.push(e.leaf_hash);
            from += 1;
        }
    }
    // Every event is there exactly once, with its canonical bytes.
    let mut want: Vec<Vec<u8>> = events.iter().map(|e| e.leaf_bytes().unwrap()).collect();
    let mut got: Vec<Vec<u8>> = log.entries(0, 1000).unwrap().into_iter().map(|e| e.leaf).collect();
    for f in (1000..N).step_by(1000) {
        got.extend(log.entries(f, 1000).unwrap().into_iter().map(|e| e.leaf));
    }
    want.sort();
    got.sort();
    assert_eq!(want, got);

    let mut sizes: Vec<u64> = vec![1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 1024, N - 1, N];
    sizes.extend((0..10).map(|_| rng.gen_range(1..=N)));
    let mut roots = std::collections::HashMap::new();
    for &size in &sizes {
        let root = rfc::mth(&leaves[..size as usize]);
        assert_eq!(log.root(size).unwrap(), root, "root of size {size}");
        roots.insert(size, root);
    }
    assert_eq!(log.head().unwrap(), (N, roots[&N]));
    assert!(matches!(log.root(N + 1), Err(LogError::TreeSizeBeyondLog { .. })));

    let mut checked = 0;
    for &size in &sizes {
        let root = roots[&size];
        // Every index for small trees, a sample (with both ends) for large ones.
        let indices: Vec<u64> = if size <= 1100 {
            (0..size).collect()
        } else {
            let mut v: Vec<u64> = (0..300).map(|_| rng.gen_range(0..size)).collect();
            v.extend([0, 1, size / 2, size - 2, size - 1]);
            v
        };
        for &i in &indices {
            let proof = log.inclusion_proof(i, size).unwrap();
            let leaf = leaves[i as usize];
            assert!(rfc::verify_inclusion(i, size, &leaf, &proof, &root), "inclusion {i} in {size}");
            checked += 1;
            // Wrong index, wrong tree size, flipped byte.
            if size > 1 {
                assert!(!rfc::verify_inclusion((i + 1) % size, size, &leaf, &proof, &root));
                assert!(!rfc::verify_inclusion(i ^ 1, size, &leaf, &proof, &root) || i ^ 1 == i);
            }
            // A wrong tree size (as transparency-dev's verifier tests: size±1 can share the proof's
            // shape, e.g. leaf 0 of sizes 3 and 4, and then the root decides).
            assert!(!rfc::verify_inclusion(i, size * 2, &leaf, &proof, &root));
            assert!(!rfc::verify_inclusion(i, size / 2, &leaf, &proof, &root));
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let k = rng.gen_range(0..bad.len());
                bad[k][rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8);
                assert!(!rfc::verify_inclusion(i, size, &leaf, &bad, &root), "flipped byte accepted");
            }
            assert!(!rfc::verify_inclusion(i, size, &rfc::leaf(b"other"), &proof, &root));
        }
        // Consistency from a sample of earlier sizes (all of them for small trees).
        let froms: Vec<u64> = if size <= 300 {
            (0..=size).collect()
        } else {
            let mut v: Vec<u64> = (0..60).map(|_| rng.gen_range(1..size)).collect();
            v.extend([0, 1, size - 1, size, size.next_power_of_two() / 2]);
            v
        };
        for &m in &froms {
            let proof = log.consistency_proof(m, size).unwrap();
            let m_root = rfc::mth(&leaves[..m as usize]);
            assert!(rfc::verify_consistency(m, size, &m_root, &root, &proof), "consistency {m} -> {size}");
            checked += 1;
            if m == 0 || m == size {
                continue;
            }
            assert!(!rfc::verify_consistency(m, size * 2, &m_root, &root, &proof));
            assert!(!rfc::verify_consistency(m, size / 2, &m_root, &root, &proof));
            assert!(!rfc::verify_consistency(m + 1, size, &m_root, &root, &proof) || m + 1 == size && proof.is_empty());
            if m > 1 {
                assert!(!rfc::verify_consistency(m - 1, size, &m_root, &root, &proof));
            }
            let mut bad = proof.clone();
            let k = rng.gen_range(0..bad.len());
            bad[k][rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8);
            assert!(!rfc::verify_consistency(m, size, &m_root, &root, &bad), "flipped byte accepted");
        }
    }
    assert!(checked > 5_000, "{checked} proofs checked");

    // Bad requests are distinct errors.
    assert!(matches!(log.inclusion_proof(N, N), Err(LogError::IndexOutOfRange { .. })));
    assert!(matches!(log.inclusion_proof(0, N + 1), Err(LogError::TreeSizeBeyondLog { .. })));
    assert!(matches!(log.consistency_proof(5, 4), Err(LogError::FromAfterTo { .. })));
    assert!(matches!(log.consistency_proof(5, N + 1), Err(LogError::TreeSizeBeyondLog { .. })));
    assert!(matches!(log.entry(N), Err(LogError::IndexOutOfRange { .. })));

    // Search by subject finds exactly the entries about it, oldest first.
    let hits = log.search("user:5", 1000).unwrap();
    let want_count = events.iter().filter(|e| e.subject == "user:5").count();
    assert_eq!(hits.len(), want_count);
    assert!(hits.windows(2).all(|w| w[0].index < w[1].index));
    assert!(hits.iter().all(|e| e.event().unwrap().subject == "user:5"));

    let v = log.verify_all().unwrap();
    assert_eq!((v.size, v.root), (N, roots[&N]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_restart_and_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let events: Vec<AuditEvent> = (0..300).map(|i| event(&mut rng, i)).collect();
    let (size, root, first_hashes) = {
        let log = Log::open(dir.path()).unwrap();
        let first = log.append_batch(&events[..200]).await.unwrap();
        // The same ids again, concurrently and in batches: nothing appended, the same indices.
        let mut tasks = Vec::new();
        for e in &events[..200] {
            let (log, e) = (log.clone(), e.clone());
            tasks.push(tokio::spawn(async move { log.append(&e).await.unwrap() }));
        }
        for (t, a) in tasks.into_iter().zip(&first) {
            let again = t.await.unwrap();
            assert!(again.duplicate);
            assert_eq!((again.index, again.leaf_hash), (a.index, a.leaf_hash));
        }
        let mixed = log.append_batch(&events[150..250]).await.unwrap();
        assert_eq!(mixed.iter().filter(|a| a.duplicate).count(), 50);
        assert_eq!(mixed[50].index, 200);
        // Concurrent first appends of one new id: exactly one is new.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (log, e) = (log.clone(), events[250].clone());
            tasks.push(tokio::spawn(async move { log.append(&e).await.unwrap() }));
        }
        let mut new = 0;
        for t in tasks {
            let a = t.await.unwrap();
            assert_eq!(a.index, 250);
            new += usize::from(!a.duplicate);
        }
        assert_eq!(new, 1);
        assert_eq!(log.size().unwrap(), 251);
        let (size, root) = log.head().unwrap();
        (size, root, first.iter().map(|a| a.leaf_hash).collect::<Vec<_>>())
    };

    // Restart: everything is still there and the log keeps growing correctly.
    {
        let log = Log::open(dir.path()).unwrap();
        assert_eq!(log.head().unwrap(), (size, root));
        for (i, h) in first_hashes.iter().enumerate() {
            assert_eq!(log.entry(i as u64).unwrap().leaf_hash, *h);
        }
        assert!(log.append(&events[10]).await.unwrap().duplicate);
        let a = log.append_batch(&events[251..]).await.unwrap();
        assert_eq!(a.last().unwrap().index, 299);
        let (size2, root2) = log.head().unwrap();
        assert_eq!(size2, 300);
        let proof = log.consistency_proof(size, size2).unwrap();
        assert!(rfc::verify_consistency(size, size2, &root, &root2, &proof));
        let leaf = log.entry(123).unwrap().leaf_hash;
        assert!(rfc::verify_inclusion(123, size2, &leaf, &log.inclusion_proof(123, size2).unwrap(), &root2));
        assert_eq!(log.verify_all().unwrap().root, root2);
    }

    // Tamper: change one byte of entry 77's leaf directly in the redb file.
    let path = dir.path().join("integrity.redb");
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(ENTRIES).unwrap();
            let (hashes, mut leaf) = {
                let row = t.get(77u64).unwrap().unwrap();
                let (hashes, leaf) = row.value();
                (hashes.to_vec(), leaf.to_vec())
            };
            let pos = leaf.iter().position(|&b| b == b'7').unwrap();
            leaf[pos] = b'8';
            t.insert(77u64, (hashes.as_slice(), leaf.as_slice())).unwrap();
        }
        txn.commit().unwrap();
    }
    let log = Log::open(dir.path()).unwrap();
    match log.verify_all() {
        Err(LogError::Corrupt(msg)) => assert!(msg.contains("entry 77"), "{msg}"),
        other => panic!("tampering not detected: {other:?}"),
    }
    // What a reader sees no longer hashes to what the tree holds.
    let e = log.entry(77).unwrap();
    assert_ne!(rfc::leaf(&e.leaf), e.leaf_hash);
}
