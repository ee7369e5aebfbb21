//! An independent RFC 9162 verifier written straight from the RFC's text (§2.1.1 hashing,
//! §2.1.3.2 inclusion, §2.1.4.2 consistency), not the crate's `merkle` module, on plain byte
//! vectors. Shared by the log's library tests and its HTTP tests.
#![allow(dead_code)]

use sha2::{Digest, Sha256};

pub type H = [u8; 32];

pub fn hash(parts: &[&[u8]]) -> H {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

pub fn leaf(data: &[u8]) -> H {
    hash(&[&[0u8], data])
}

pub fn node(l: &H, r: &H) -> H {
    hash(&[&[1u8], l, r])
}

/// MTH(D[n]) over leaf hashes: split at the largest power of two smaller than n.
pub fn mth(leaves: &[H]) -> H {
    match leaves.len() {
        0 => hash(&[]),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// §2.1.3.2, step by step.
pub fn verify_inclusion(leaf_index: u64, tree_size: u64, leaf_hash: &H, path: &[H], root: &H) -> bool {
    // 1.
    if leaf_index >= tree_size {
        return false;
    }
    // 2.
    let mut fnn = leaf_index;
    let mut sn = tree_size - 1;
    // 3.
    let mut r = *leaf_hash;
    // 4.
    for p in path {
        // a.
        if sn == 0 {
            return false;
        }
        // b.
        if fnn % 2 == 1 || fnn == sn {
            // i.
            r = node(p, &r);
            // ii.
            if fnn.is_multiple_of(2) {
                loop {
                    fnn >>= 1;
                    sn >>= 1;
                    if fnn % 2 == 1 || fnn == 0 {
                        break;
                    }
                }
            }
        } else {
            // i.
            r = node(&r, p);
        }
        // c.
        fnn >>= 1;
        sn >>= 1;
    }
    // 5.
    sn == 0 && r == *root
}

/// §2.1.4.2, step by step; sizes 0 and equal sizes as the RFC's preamble allows.
pub fn verify_consistency(first: u64, second: u64, first_hash: &H, second_hash: &H, path: &[H]) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return path.is_empty() && first_hash == second_hash;
    }
    if first == 0 {
        return path.is_empty();
    }
    // 1.
    if path.is_empty() {
        return false;
    }
    // 2.
    let mut path: Vec<H> = path.to_vec();
    if first & (first - 1) == 0 {
        path.insert(0, *first_hash);
    }
    // 3.
    let mut fnn = first - 1;
    let mut sn = second - 1;
    // 4.
    if fnn % 2 == 1 {
        while fnn % 2 == 1 {
            fnn >>= 1;
            sn >>= 1;
        }
    }
    // 5.
    let mut fr = path[0];
    let mut sr = path[0];
    // 6.
    for c in &path[1..] {
        // a.
        if sn == 0 {
            return false;
        }
        // b.
        if fnn % 2 == 1 || fnn == sn {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if fnn.is_multiple_of(2) {
                loop {
                    fnn >>= 1;
                    sn >>= 1;
                    if fnn % 2 == 1 || fnn == 0 {
                        break;
                    }
                }
            }
        } else {
            sr = node(&sr, c);
        }
        // c.
        fnn >>= 1;
        sn >>= 1;
    }
    // 7.
    fr == *first_hash && sr == *second_hash && sn == 0
}
