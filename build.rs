//! Build script: only tells Cargo to rebuild when anything under `embedded/` changes.
//! `include_dir!` records the files it includes, but not files added later, so without this a
//! new Dockerfile would silently be missing from the binary until an unrelated edit.
fn main() {
    println!("cargo:rerun-if-changed=embedded");
}
