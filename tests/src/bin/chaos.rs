//! `hack/chaos.sh`: the long run of the fault scenarios (tests/tests/faults.rs runs them
//! bounded), printing the table and its JSON.
//!
//! Usage: chaos [--tenants N] [--kills N] [--storm-seconds N] [--outage-seconds N]
//! [--slow-tenants N] (defaults 200, 100, 60, 60, 20).

use enclave_tests::chaos::{self, Cluster, Row};
use std::time::Duration;

fn arg(name: &str, default: u64) -> anyhow::Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let tenants = usize::try_from(arg("--tenants", 200)?)?;
    let kills = usize::try_from(arg("--kills", 100)?)?;
    let storm = arg("--storm-seconds", 60)?;
    let outage = arg("--outage-seconds", 60)?;
    let slow = usize::try_from(arg("--slow-tenants", 20)?)?;
    eprintln!("==> starting the local control plane");
    let mut cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let mut rows: Vec<Row> = Vec::new();
    // Each row as it comes (a long run may be cut short), a failed scenario as a row too.
    let mut record = |scenario: &str, result: anyhow::Result<Row>| {
        let row = result.unwrap_or_else(|error| Row {
            scenario: scenario.into(),
            note: format!("failed: {error:#}"),
            ..Row::default()
        });
        eprint!("{}", chaos::table(std::slice::from_ref(&row)));
        rows.push(row);
    };
    eprintln!("==> kill -9 x{kills} among {tenants} tenants");
    record("kill -9", chaos::kills(&mut cluster, tenants, kills).await);
    eprintln!("==> kube-apiserver and etcd restarts");
    record(
        "apiserver, etcd restart",
        chaos::restarts(&mut cluster).await,
    );
    eprintln!("==> two leaders");
    record("two leaders", chaos::two_leaders(&mut cluster).await);
    eprintln!("==> a conflicting field manager");
    record(
        "conflicting manager",
        chaos::conflicts(&mut cluster, 10).await,
    );
    eprintln!("==> a Tenant edited every 100 ms for {storm}s");
    record("edit every 100 ms", chaos::storm(&mut cluster, storm).await);
    eprintln!("==> the webhook down for {outage}s");
    record(
        "webhook down",
        chaos::webhook_outage(&mut cluster, outage).await,
    );
    eprintln!("==> a slow, lossy API");
    record(
        "slow, lossy API",
        chaos::slow_api(&mut cluster, slow, Duration::from_millis(200), 5).await,
    );
    print!("{}", chaos::table(&rows));
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}
