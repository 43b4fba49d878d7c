//! `weir bench` without the `weir` binary: `cargo run --release -p weir-bench --example bench -- --help`.

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    bench: weir_bench::cli::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    weir_bench::cli::run(Cli::parse().bench).await
}
