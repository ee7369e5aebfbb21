//! The acgs image, built from the executable that is running: no registry, no toolchain, no
//! Dockerfile to write by hand.
//!
//! The build context is embedded/docker/Dockerfile plus the binary, an `/etc/passwd` and
//! `/etc/group` naming the unprivileged user 10001, and empty `/data` and `/tmp`. A static binary
//! (the musl release build) needs nothing else, so the image is `FROM scratch` and a few MB
//! more than the binary. A dynamically linked binary gets the shared libraries it loads added
//! at their paths (found with `ldd`), or, where that cannot be done, a one-line error that says
//! why and what to do instead. The tag carries the binary's digest, so a rebuilt binary gets a
//! new image and an unchanged one is not built twice.
//!
//! The verification service can run from a second image: the same files on top of a solver
//! image that has `cvc5` on PATH ([`solver_context`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::embedded::EMBEDDED;

/// The image's repository name.
pub const REPOSITORY: &str = "acgs";

/// The binary an image is built from.
#[derive(Debug, Clone)]
pub struct Binary {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// The dynamic loader it names, if it is not static.
    pub interpreter: Option<String>,
}

impl Binary {
    /// Reads `path`, or the running executable.
    pub fn load(path: Option<&Path>) -> Result<Binary> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => std::env::current_exe().context("cannot find the running executable")?,
        };
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let interpreter =
            elf_interpreter(&bytes).with_context(|| format!("{} is not an x86-64 ELF executable", path.display()))?;
        Ok(Binary { path, bytes, interpreter })
    }

    /// `acgs:<version>-<first 12 hex of the binary's SHA-256>`.
    pub fn tag(&self) -> String {
        let digest = hex::encode(Sha256::digest(&self.bytes));
        format!("{REPOSITORY}:{}-{}", env!("CARGO_PKG_VERSION"), &digest[..12])
    }
}

/// The `PT_INTERP` of a 64-bit little-endian ELF file: `None` for a static executable.
pub fn elf_interpreter(bytes: &[u8]) -> Result<Option<String>> {
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| bytes.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        bail!("not a 64-bit little-endian ELF file");
    }
    if u16_at(18) != Some(62) {
        bail!("not built for x86-64");
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        bail!("truncated ELF header");
    };
    for i in 0..u64::from(phnum) {
        let at = i
            .checked_mul(u64::from(phentsize))
            .and_then(|o| o.checked_add(phoff))
            .and_then(|o| usize::try_from(o).ok())
            .context("program header offset out of range")?;
        if u32_at(at) == Some(3) {
            let (Some(offset), Some(size)) = (u64_at(at + 8), u64_at(at + 32)) else {
                bail!("truncated program header");
            };
            let (offset, size) = (usize::try_from(offset)?, usize::try_from(size)?);
            let end = offset.checked_add(size).context("PT_INTERP out of range")?;
            let raw = bytes.get(offset..end).context("PT_INTERP outside the file")?;
            let text = raw.split(|b| *b == 0).next().unwrap_or_default();
            return Ok(Some(String::from_utf8_lossy(text).into_owned()));
        }
    }
    Ok(None)
}

/// The shared libraries (and the loader) a dynamic binary loads, as `ldd` reports them.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = std::process::Command::new("ldd").arg(binary).output().map_err(|e| {
        anyhow::anyhow!(
            "{} is dynamically linked and `ldd` cannot run to find its libraries ({e}); build the static binary \
             (cargo build --release --target x86_64-unknown-linux-musl) and pass it with --acgs-binary",
            binary.display()
        )
    })?;
    if !output.status.success() {
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&output.stdout)))
}

/// Paths from `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the kernel's vDSO has no file.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The build context (a tar archive) of the acgs image for `binary`.
pub fn context(binary: &Binary) -> Result<Vec<u8>> {
    let mut dockerfile = EMBEDDED
        .get_file("docker/Dockerfile")
        .and_then(|f| f.contents_utf8())
        .context("the embedded Dockerfile is missing")?
        .to_string();
    let mut extra = Vec::new();
    if let Some(interpreter) = &binary.interpreter {
        for library in shared_libraries(&binary.path)? {
            let bytes = std::fs::read(&library).with_context(|| format!("cannot read {}", library.display()))?;
            extra.push((format!("rootfs{}", library.display()), bytes));
        }
        if !extra.iter().any(|(p, _)| p == &format!("rootfs{interpreter}")) {
            bail!("{} loads {interpreter}, which ldd did not list; use the static build", binary.path.display());
        }
        dockerfile.push_str("# The running binary is dynamically linked: the libraries it loads.\nCOPY rootfs/ /\n");
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut file = |path: &str, bytes: &[u8], mode: u32| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        tar.append_data(&mut header, path, bytes)
    };
    file("Dockerfile", dockerfile.as_bytes(), 0o644)?;
    file("acgs", &binary.bytes, 0o755)?;
    file("etc/passwd", b"acgs:x:10001:10001:acgs:/data:/acgs\n", 0o644)?;
    file("etc/group", b"acgs:x:10001:\n", 0o644)?;
    file("data/.keep", b"", 0o644)?;
    file("tmp/.keep", b"", 0o644)?;
    for (path, bytes) in &extra {
        file(path, bytes, 0o755)?;
    }
    Ok(tar.into_inner()?)
}

/// The build context of the verification image: the acgs binary on top of `solver_image`,
/// which must have `cvc5` on PATH.
pub fn solver_context(binary: &Binary, solver_image: &str) -> Result<Vec<u8>> {
    let dockerfile = format!(
        "# The verification service with the cvc5 solver of {solver_image}.\n\
         FROM {solver_image}\n\
         COPY acgs /acgs\n\
         COPY --chown=10001:10001 data /data\n\
         USER 10001:10001\n\
         ENV ACGS_DATA_DIR=/data\n\
         WORKDIR /data\n\
         ENTRYPOINT [\"/acgs\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes, mode) in [
        ("Dockerfile", dockerfile.as_bytes(), 0o644),
        ("acgs", binary.bytes.as_slice(), 0o755),
        ("data/.keep", b"", 0o644),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        tar.append_data(&mut header, path, bytes)?;
    }
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_is_read_as_elf() {
        let me = Binary::load(None).expect("the test binary is an ELF executable");
        // Built for the host (glibc) it names a loader; a musl static build would not.
        if let Some(interp) = &me.interpreter {
            assert!(interp.starts_with('/'), "{interp}");
        }
        assert!(me.tag().starts_with("acgs:"));
        assert_eq!(me.tag().len(), "acgs:".len() + env!("CARGO_PKG_VERSION").len() + 1 + 12);
    }

    #[test]
    fn a_dynamic_binary_gets_its_loader_and_libraries() {
        let me = Binary::load(None).expect("the test binary");
        let Some(interpreter) = me.interpreter.clone() else {
            return; // a static test build: nothing to add, the case below is the one that needs it
        };
        let bytes = context(&me).expect("context");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").display().to_string())
            .collect();
        assert!(names.contains(&format!("rootfs{interpreter}")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("libc.so")), "{names:?}");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut dockerfile = String::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            if entry.path().expect("path").display().to_string() == "Dockerfile" {
                std::io::Read::read_to_string(&mut entry, &mut dockerfile).expect("text");
            }
        }
        assert!(dockerfile.contains("COPY rootfs/ /"), "{dockerfile}");
    }

    #[test]
    fn garbage_is_not_an_executable() {
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
        assert!(elf_interpreter(b"\x7fELF\x02\x01").is_err());
        assert!(elf_interpreter(&[]).is_err());
    }

    #[test]
    fn ldd_output_gives_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\tlibgone.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            vec![PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
    }

    #[test]
    fn the_context_holds_the_dockerfile_the_binary_and_the_user() {
        let binary = Binary { path: "/nonexistent".into(), bytes: b"\x7fELF".to_vec(), interpreter: None };
        let bytes = context(&binary).expect("context");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").display().to_string())
            .collect();
        for needed in ["Dockerfile", "acgs", "etc/passwd", "etc/group", "data/.keep", "tmp/.keep"] {
            assert!(names.contains(&needed.to_string()), "{needed} in {names:?}");
        }
    }
}
