//! The `idsync` binary: parses the command line and hands over to the library's CLI.

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(idsync::cli::run(std::env::args_os()));
    std::process::exit(code)
}
