//! The `idsync` binary: parses the command line and hands over to the library's CLI.

fn main() -> anyhow::Result<()> {
    restore_default_sigpipe();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(idsync::cli::run(std::env::args_os(), serve));
    std::process::exit(code)
}

/// `idsync serve`: the HTTP service. The binary joins the two frontends; neither imports the
/// other.
fn serve(
    config: idsync::config::Config,
    store: idsync::store::SqlStore,
) -> idsync::cli::ServeFuture {
    Box::pin(async move {
        idsync::http::serve(config, store)
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    })
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`idsync audit | head`) would panic. A
/// command-line tool should end quietly there, as other tools do. The service keeps SIGPIPE
/// ignored: a client that goes away must never end the process.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    if !std::env::args().skip(1).any(|arg| arg == "serve") {
        // SAFETY: called first thing in main, before any other thread exists; it only resets a
        // signal disposition to the system default.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}
