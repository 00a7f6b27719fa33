//! `warden store backup FILE --config F`: an online, consistent copy of the embedded
//! store. The running appliance holds the store file's lock, so it is asked over its admin
//! socket to make the copy; when no appliance runs, the store is opened here and copied
//! the same way. A Redis store is refused with where to read how to back it up.

use std::path::Path;

use anyhow::{bail, Context};
use warden_api::admin_socket::{self, AdminError};

use crate::config::{self, StoreKind};

pub fn run(config_path: &Path, file: &Path) -> anyhow::Result<()> {
    let cfg = config::load(config_path)?;
    if *cfg.store.kind.get_ref() == StoreKind::Redis {
        bail!(
            "this appliance's store is Redis: back it up with Redis itself (BGSAVE and copy \
             dump.rdb, or a replica); see docs/operations.md, \"Backing up the store\""
        );
    }
    let file = std::path::absolute(file).with_context(|| format!("{}", file.display()))?;
    if file.is_dir() {
        bail!("{} is a directory; name the file to write", file.display());
    }
    let socket = admin_socket::socket_path(&cfg.store.path);
    match admin_socket::request(&socket, &format!("store backup {}", file.display())) {
        Ok(answer) => {
            println!("{answer}");
            Ok(())
        }
        // Nobody listens: no appliance runs, so the file is free to open here.
        Err(AdminError::Connect { .. }) => offline(&cfg.store.path, &file),
        Err(e) => Err(e.into()),
    }
}

fn offline(dir: &Path, file: &Path) -> anyhow::Result<()> {
    if !dir.join(warden_store::EMBEDDED_FILE_NAME).exists() {
        bail!(
            "no store in {} (store.path), and no appliance answering on its admin socket",
            dir.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    rt.block_on(async {
        let store = warden_store::EmbeddedStore::open(dir)
            .await
            .with_context(|| format!("opening the store in {}", dir.display()))?;
        let b = warden_store::StateStore::backup_to(&store, file).await?;
        println!(
            "{}: {} tables, {} rows, {} bytes (opened and checked; no appliance was running)",
            b.file.display(),
            b.tables,
            b.rows,
            b.bytes
        );
        Ok(())
    })
}
