//! (being written)

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::store::SqlStore;

pub async fn run(
    _store: SqlStore,
    _config: Arc<Config>,
    _instance: Arc<str>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
