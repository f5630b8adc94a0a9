//! `kybern-fake-apiserver`: runs kybern-testkube's fake Kubernetes API server until Ctrl-C, for
//! trying `kubectl` or `kybern serve --cluster` against it by hand.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kybern_testkube::FakeApiServer;

/// Serve a fake Kubernetes API over plain HTTP and write a kubeconfig for it.
#[derive(Debug, Parser)]
#[command(name = "kybern-fake-apiserver", version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 6443, env = "KYBERN_FAKE_APISERVER_PORT")]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), env = "KYBERN_FAKE_APISERVER_ADDRESS")]
    address: IpAddr,
    /// Where to write the kubeconfig (context `fake`, namespace `default`).
    #[arg(
        long,
        default_value = "kubeconfig",
        env = "KYBERN_FAKE_APISERVER_KUBECONFIG"
    )]
    kubeconfig: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let addr = SocketAddr::new(args.address, args.port);
    let server = FakeApiServer::start_on(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    server
        .write_kubeconfig(&args.kubeconfig)
        .with_context(|| format!("writing {}", args.kubeconfig.display()))?;
    println!("fake API server at {}", server.url());
    println!(
        "kubeconfig: {} (try: kubectl --kubeconfig {} get ns)",
        args.kubeconfig.display(),
        args.kubeconfig.display()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(())
}
