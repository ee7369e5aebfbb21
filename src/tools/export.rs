//! `acgs embedded export DIR [--force]` and `acgs embedded list`: write out or list the files
//! compiled into the binary from `embedded/` (see [`crate::embedded::EMBEDDED`]), so operators
//! can inspect or customise the bundled Dockerfiles, compose and monitoring files.
//!
//! Export never overwrites an existing file unless `--force`; it checks every target first and
//! names the first that exists, so a refusal writes nothing.

use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use include_dir::{Dir, DirEntry};

use crate::embedded::EMBEDDED;

/// Work with the files bundled into the binary.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbeddedArgs {
    /// What to do with the embedded tree.
    #[command(subcommand)]
    pub command: EmbeddedCommand,
}

/// `acgs embedded …` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EmbeddedCommand {
    /// Write every embedded file to a directory.
    Export(ExportArgs),
    /// Print the path of every embedded file, one per line.
    List,
}

/// Write every embedded file to DIR, keeping the relative paths.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Target directory (created if missing).
    #[arg(env = "ACGS_EXPORT_DIR", value_name = "DIR")]
    pub dir: PathBuf,

    /// Overwrite files that already exist in DIR (other files there are left alone).
    #[arg(long)]
    pub force: bool,
}

/// Runs `export` or `list` on [`EMBEDDED`].
pub async fn run(args: EmbeddedArgs) -> Result<()> {
    match args.command {
        EmbeddedCommand::Export(export_args) => {
            let written = export(&EMBEDDED, &export_args.dir, export_args.force)?;
            println!("exported {} file(s) to {}", written.len(), export_args.dir.display());
        }
        EmbeddedCommand::List => {
            for path in list(&EMBEDDED) {
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

/// Every file in `tree`, relative to `tree`, sorted.
pub fn list(tree: &Dir<'_>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect(tree, tree.path(), &mut files, &mut Vec::new());
    files.sort();
    files.into_iter().map(|(rel, _)| rel).collect()
}

/// Writes every file of `tree` under `dest` (created if missing) and returns the paths written.
///
/// Without `force`, fails before writing anything if any target exists, naming the first (in
/// sorted order). With `force`, existing files are overwritten.
pub fn export(tree: &Dir<'_>, dest: &Path, force: bool) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    collect(tree, tree.path(), &mut files, &mut dirs);
    files.sort();
    for (rel, _) in &files {
        check_relative(rel)?;
    }
    for rel in &dirs {
        check_relative(rel)?;
    }
    if !force && let Some((rel, _)) = files.iter().find(|(rel, _)| fs::symlink_metadata(dest.join(rel)).is_ok()) {
        bail!(
            "refusing to overwrite {} (use --force to overwrite existing files in {})",
            dest.join(rel).display(),
            dest.display()
        );
    }
    fs::create_dir_all(dest).with_context(|| format!("creating directory {}", dest.display()))?;
    for rel in &dirs {
        let path = dest.join(rel);
        fs::create_dir_all(&path).with_context(|| format!("creating directory {}", path.display()))?;
    }
    let mut written = Vec::with_capacity(files.len());
    for (rel, contents) in files {
        let path = dest.join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating directory {}", parent.display()))?;
        }
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Walks `dir`, collecting files (relative path, contents) and directories (relative paths),
/// relative to `root` (so a sub-tree exports without its prefix).
fn collect<'a>(dir: &Dir<'a>, root: &Path, files: &mut Vec<(PathBuf, &'a [u8])>, dirs: &mut Vec<PathBuf>) {
    for entry in dir.entries() {
        let rel = relative(entry.path(), root);
        match entry {
            DirEntry::Dir(sub) => {
                dirs.push(rel);
                collect(sub, root, files, dirs);
            }
            DirEntry::File(file) => files.push((rel, file.contents())),
        }
    }
}

fn relative(path: &Path, root: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// Embedded paths come from the source tree, but never let one escape the target directory.
fn check_relative(rel: &Path) -> Result<()> {
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("embedded path {} is not a plain relative path", rel.display());
    }
    Ok(())
}
