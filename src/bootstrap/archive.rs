//! Images for air-gapped sites: `acgs images save -o FILE` writes every third-party image a
//! stack needs (the inner daemon's, PostgreSQL, Redis, NATS, Prometheus, Grafana, a solver
//! image — as selected) from the local daemon into one `docker save` archive;
//! `acgs bootstrap --image-archive FILE` loads it before anything else. The acgs image itself
//! is not in it: the bootstrap builds it from the binary, which is all a site needs to carry
//! besides the archive.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures::StreamExt;

use super::ImageArgs;
use super::engine::Engine;

/// `acgs images …`.
#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Write every image a stack needs into one archive (`docker save` format).
    Save(SaveArgs),
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// The archive to write (refused if it exists).
    #[arg(short = 'o', long, env = "ACGS_IMAGES_OUTPUT", value_name = "FILE")]
    pub output: PathBuf,
    /// Leave out the inner daemon's image (for `--mode host` sites).
    #[arg(long)]
    pub no_dind: bool,
    #[command(flatten)]
    pub images: ImageArgs,
}

/// Runs `acgs images save`.
pub async fn run(command: ImagesCommand) -> Result<()> {
    let ImagesCommand::Save(args) = command;
    let engine = Engine::local().await?;
    let images = args.images.images()?;
    let wanted = args.images.third_party(&images, !args.no_dind);
    for (_, image) in &wanted {
        super::up::ensure_image(&engine, None, image).await?;
    }
    let names: Vec<&str> = wanted.iter().map(|(_, i)| i.as_str()).collect();
    save(&engine, &names, &args.output).await?;
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or_default();
    println!("{}: {} images, {} MiB: {}", args.output.display(), names.len(), size >> 20, names.join(", "));
    Ok(())
}

/// Streams `images` from `engine` into a new file at `output` (removed again on failure).
async fn save(engine: &Engine, images: &[&str], output: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .await
        .with_context(|| format!("cannot create {}", output.display()))?;
    let written = async {
        let mut stream = engine.docker.export_images(images);
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.with_context(|| format!("exporting images from {}", engine.address))?).await?;
        }
        file.sync_all().await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(output).await;
    }
    written
}

/// Loads an archive into `engine`.
pub async fn load(engine: &Engine, archive: &Path) -> Result<()> {
    let file = tokio::fs::File::open(archive).await.with_context(|| format!("cannot open {}", archive.display()))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    engine.load(stream).await.with_context(|| format!("loading {}", archive.display()))
}
