//! RFC 9162 §2.1 Merkle tree hashing: leaf and node hashes, the Merkle Tree Hash of a log of any
//! size, inclusion and consistency proofs (generation and the verification a third party runs).
//!
//! Pure: no I/O. Generation is generic over [`SubtreeSource`], which answers the hash of a
//! *complete* subtree — `(level, index)` covers leaves `[index·2^level, (index+1)·2^level)` — so a
//! store that keeps those hashes serves any root or proof in O(log n) look-ups. Proofs list hashes
//! in RFC 9162 order (the sibling nearest the leaf first).
//!
//! Conventions as in RFC 9162: the root of the empty tree is SHA-256 of the empty string; an
//! inclusion proof in a tree of one leaf is empty; a consistency proof from size 0 or between equal
//! sizes is empty.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`: the hash of one log entry.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The Merkle Tree Hash of the empty log: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`): where RFC 9162 splits a tree.
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Something that knows the hash of every complete subtree of a log.
pub trait SubtreeSource {
    type Error;
    /// The hash of the complete subtree over leaves `[index << level, (index + 1) << level)`.
    /// Level 0 is the leaf hash itself.
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// A caller's mistake in asking for a root or proof, or the source's own failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError<E> {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency proof asked from size {from} to the smaller size {to}")]
    FromAfterTo { from: u64, to: u64 },
    #[error("{0}")]
    Source(E),
}

/// The Merkle Tree Hash of the first `size` leaves.
pub fn root<S: SubtreeSource>(src: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 { Ok(empty_root()) } else { range_hash(src, 0, size) }
}

/// The Merkle Tree Hash of leaves `[start, end)` as RFC 9162 defines it for `D[start:end]` when
/// `start` is a multiple of the split of the enclosing tree (always true for the ranges the proofs
/// need). `end > start`.
fn range_hash<S: SubtreeSource>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return src.subtree(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split_point(n);
    let left = range_hash(src, start, start + k)?;
    let right = range_hash(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1).
pub fn inclusion_proof<S: SubtreeSource>(src: &S, index: u64, size: u64) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::with_capacity(64 - size.leading_zeros() as usize);
    path(src, index, 0, size, &mut out).map_err(ProofError::Source)?;
    Ok(out)
}

/// PATH(m, D[start:end]) with `m` relative to `start`.
fn path<S: SubtreeSource>(src: &S, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), S::Error> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the tree of the first `from` leaves and that of the first `to`
/// (RFC 9162 §2.1.4.1). Empty when `from` is 0 or equals `to`.
pub fn consistency_proof<S: SubtreeSource>(src: &S, from: u64, to: u64) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if from > to {
        return Err(ProofError::FromAfterTo { from, to });
    }
    let mut out = Vec::new();
    if from == 0 || from == to {
        return Ok(out);
    }
    subproof(src, from, 0, to, true, &mut out).map_err(ProofError::Source)?;
    Ok(out)
}

/// SUBPROOF(m, D[start:end], b).
fn subproof<S: SubtreeSource>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !b {
            out.push(range_hash(src, start, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, start, start + k, b, out)?;
        out.push(range_hash(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// Why a proof did not verify.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency proof from size {from} to the smaller size {to}")]
    FromAfterTo { from: u64, to: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the expected root hash")]
    RootMismatch,
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1–5, without the final compare).
pub fn root_from_inclusion_proof(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Result<Hash, VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    Ok(r)
}

/// Verify that `leaf` (a leaf hash) is entry `index` of the tree of `size` leaves with `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), VerifyError> {
    if root_from_inclusion_proof(leaf, index, size, proof)? == *root { Ok(()) } else { Err(VerifyError::RootMismatch) }
}

/// Verify that the tree of `to` leaves with `to_root` extends the tree of `from` leaves with
/// `from_root` (RFC 9162 §2.1.4.2). From 0, and between equal sizes, the proof must be empty (and
/// equal sizes need equal roots).
pub fn verify_consistency(
    from: u64,
    to: u64,
    proof: &[Hash],
    from_root: &Hash,
    to_root: &Hash,
) -> Result<(), VerifyError> {
    if from > to {
        return Err(VerifyError::FromAfterTo { from, to });
    }
    if from == to {
        if !proof.is_empty() {
            return Err(VerifyError::WrongLength);
        }
        return if from_root == to_root { Ok(()) } else { Err(VerifyError::RootMismatch) };
    }
    if from == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(VerifyError::WrongLength) };
    }
    // 1. An empty path fails.
    let Some((first, rest)) = proof.split_first() else {
        return Err(VerifyError::WrongLength);
    };
    // 2. If `from` is a power of two, the path starts with from_root.
    let (start, rest): (&Hash, &[Hash]) = if from.is_power_of_two() { (from_root, proof) } else { (first, rest) };
    // 3., 4.
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // 5.
    let (mut fr, mut sr) = (*start, *start);
    // 6.
    for c in rest {
        if s == 0 {
            return Err(VerifyError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // 7.
    if s != 0 {
        return Err(VerifyError::WrongLength);
    }
    if fr == *from_root && sr == *to_root { Ok(()) } else { Err(VerifyError::RootMismatch) }
}

/// The Merkle Tree Hash of a log read one leaf at a time, in O(log n) memory: the hashes of the
/// complete subtrees on the right edge of the tree (a "compact range" from 0). For a verifier
/// that re-walks a whole log without holding every leaf hash.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    size: u64,
    /// `edge[l]` is the hash of the complete subtree `(l, (size >> l) - 1)` when bit `l` of `size`
    /// is set (anything otherwise).
    edge: Vec<Hash>,
}

impl RootBuilder {
    pub fn new() -> RootBuilder {
        RootBuilder::default()
    }

    /// The number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let (mut hash, mut level, mut index) = (leaf, 0usize, self.size);
        while index & 1 == 1 {
            hash = node_hash(&self.edge[level], &hash);
            level += 1;
            index >>= 1;
        }
        if level == self.edge.len() {
            self.edge.push(hash);
        } else {
            self.edge[level] = hash;
        }
        self.size += 1;
    }

    /// The Merkle Tree Hash of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut root: Option<Hash> = None;
        for (level, left) in self.edge.iter().enumerate() {
            if (self.size >> level) & 1 == 1 {
                root = Some(match root {
                    None => *left,
                    Some(right) => node_hash(left, &right),
                });
            }
        }
        root.unwrap_or_else(empty_root)
    }
}

/// Leaf hashes held in memory, as a [`SubtreeSource`]; subtrees are computed on demand (cost
/// proportional to their size). For tests, small trees and offline tools.
pub struct LeafHashes<'a>(pub &'a [Hash]);

/// A subtree that is not complete within the leaves given to [`LeafHashes`].
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("subtree (level {level}, index {index}) is not complete in the leaves given")]
pub struct MissingSubtree {
    pub level: u32,
    pub index: u64,
}

impl SubtreeSource for LeafHashes<'_> {
    type Error = MissingSubtree;
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, MissingSubtree> {
        let missing = MissingSubtree { level, index };
        let width = 1u64.checked_shl(level).ok_or(missing)?;
        let start = index.checked_mul(width).ok_or(missing)?;
        let end = start.checked_add(width).ok_or(missing)?;
        let leaves = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.0.get(s..e))
            .ok_or(missing)?;
        Ok(complete_root(leaves))
    }
}

/// The root of a power-of-two number of leaf hashes.
fn complete_root(leaves: &[Hash]) -> Hash {
    match leaves {
        [one] => *one,
        _ => {
            let (l, r) = leaves.split_at(leaves.len() / 2);
            node_hash(&complete_root(l), &complete_root(r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The RFC 6962 reference inputs used by Certificate Transparency implementations.
    const LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    /// MTH of the first 1..=8 of them (transparency-dev/merkle proof/verify_test.go `roots`).
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES.iter().map(|l| leaf_hash(&hex::decode(l).unwrap())).collect()
    }

    #[test]
    fn reference_roots_for_every_size() {
        let lh = leaves();
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(root(&LeafHashes(&lh), 0).unwrap(), empty_root());
        for n in 1..=8 {
            assert_eq!(hex::encode(root(&LeafHashes(&lh), n).unwrap()), ROOTS[n as usize - 1], "size {n}");
        }
        assert_eq!(hex::encode(lh[1]), "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7");
    }

    /// transparency-dev/merkle `inclusionProofs` (their leaf numbers are 1-based).
    #[test]
    fn reference_inclusion_proofs() {
        let lh = leaves();
        let src = LeafHashes(&lh);
        let cases: [(u64, u64, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = inclusion_proof(&src, index, size).unwrap();
            assert_eq!(got, want, "inclusion {index} in {size}");
            let r = h(ROOTS[size as usize - 1]);
            verify_inclusion(&lh[index as usize], index, size, &got, &r).unwrap();
            // Corruptions, as transparency-dev's verifierCheck does.
            assert!(verify_inclusion(&lh[index as usize], index + 1, size, &got, &r).is_err());
            assert!(verify_inclusion(&lh[index as usize], index, size * 2, &got, &r).is_err());
            assert!(verify_inclusion(&leaf_hash(b"WrongLeaf"), index, size, &got, &r).is_err());
            assert!(verify_inclusion(&lh[index as usize], index, size, &got, &empty_root()).is_err());
            let mut longer = got.clone();
            longer.push(r);
            assert!(verify_inclusion(&lh[index as usize], index, size, &longer, &r).is_err());
            for i in 0..got.len() {
                let mut bad = got.clone();
                bad[i][0] ^= 8;
                assert!(verify_inclusion(&lh[index as usize], index, size, &bad, &r).is_err());
                let mut short = got.clone();
                short.remove(i);
                assert!(verify_inclusion(&lh[index as usize], index, size, &short, &r).is_err());
            }
        }
    }

    /// transparency-dev/merkle `consistencyProofs`.
    #[test]
    fn reference_consistency_proofs() {
        let lh = leaves();
        let src = LeafHashes(&lh);
        let cases: [(u64, u64, &[&str]); 5] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (from, to, want) in cases {
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            let got = consistency_proof(&src, from, to).unwrap();
            assert_eq!(got, want, "consistency {from} -> {to}");
            let (r1, r2) = (h(ROOTS[from as usize - 1]), h(ROOTS[to as usize - 1]));
            verify_consistency(from, to, &got, &r1, &r2).unwrap();
            if got.is_empty() {
                continue;
            }
            assert!(verify_consistency(from - 1, to, &got, &r1, &r2).is_err());
            assert!(verify_consistency(from + 1, to, &got, &r1, &r2).is_err());
            assert!(verify_consistency(from, to * 2, &got, &r1, &r2).is_err());
            assert!(verify_consistency(from, to / 2, &got, &r1, &r2).is_err());
            assert!(verify_consistency(from, to, &got, &r2, &r1).is_err());
            assert!(verify_consistency(from, to, &[], &r1, &r2).is_err());
            assert!(verify_consistency(from, to, &got[..got.len() - 1], &r1, &r2).is_err());
            for i in 0..got.len() {
                let mut bad = got.clone();
                bad[i][0] ^= 16;
                assert!(verify_consistency(from, to, &bad, &r1, &r2).is_err());
            }
        }
    }

    #[test]
    fn root_builder_matches_root_for_every_size() {
        let lh: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut b = RootBuilder::new();
        assert_eq!((b.size(), b.root()), (0, empty_root()));
        for (n, leaf) in lh.iter().enumerate() {
            b.push(*leaf);
            assert_eq!(b.size(), n as u64 + 1);
            assert_eq!(b.root(), root(&LeafHashes(&lh), n as u64 + 1).unwrap(), "size {}", n + 1);
        }
        let mut b = RootBuilder::new();
        for l in leaves() {
            b.push(l);
            assert_eq!(hex::encode(b.root()), ROOTS[b.size() as usize - 1]);
        }
    }

    #[test]
    fn edge_cases() {
        let (r1, r2) = (leaf_hash(b"1"), leaf_hash(b"2"));
        assert!(verify_consistency(0, 0, &[], &r1, &r1).is_ok());
        assert!(verify_consistency(0, 1, &[], &r1, &r2).is_ok());
        assert!(verify_consistency(1, 1, &[], &r1, &r2).is_err());
        assert!(verify_consistency(1, 0, &[], &r1, &r2).is_err());
        assert!(verify_consistency(1, 2, &[], &r1, &r2).is_err());
        assert!(verify_consistency(1, 1, &[r1], &r1, &r1).is_err());
        assert!(verify_inclusion(&r1, 0, 0, &[], &r1).is_err());
        assert!(verify_inclusion(&r1, 0, 1, &[], &r1).is_ok());
        let lh = leaves();
        let src = LeafHashes(&lh);
        assert_eq!(inclusion_proof(&src, 8, 8), Err(ProofError::IndexOutOfRange { index: 8, size: 8 }));
        assert_eq!(consistency_proof(&src, 3, 2), Err(ProofError::FromAfterTo { from: 3, to: 2 }));
        assert!(matches!(root(&src, 9), Err(MissingSubtree { .. })));
    }

    /// Every proof of every tree up to 70 leaves verifies, and only for its own index and sizes.
    #[test]
    fn all_small_trees() {
        let lh: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let src = LeafHashes(&lh);
        let roots: Vec<Hash> = (0..=70).map(|n| root(&src, n).unwrap()).collect();
        for n in 1..=70u64 {
            for m in 0..n {
                let p = inclusion_proof(&src, m, n).unwrap();
                verify_inclusion(&lh[m as usize], m, n, &p, &roots[n as usize]).unwrap();
                if n > 1 {
                    let other = (m + 1) % n;
                    assert!(verify_inclusion(&lh[m as usize], other, n, &p, &roots[n as usize]).is_err());
                }
                let c = consistency_proof(&src, m, n).unwrap();
                verify_consistency(m, n, &c, &roots[m as usize], &roots[n as usize]).unwrap();
                if m > 0 {
                    assert!(verify_consistency(m, n, &c, &roots[m as usize - 1], &roots[n as usize]).is_err());
                }
            }
        }
    }

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(1 << 40), 1 << 39);
    }
}
