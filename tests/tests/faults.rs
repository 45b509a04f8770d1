//! Faults on a real control plane (the bounded run; `hack/chaos.sh` is the long one): the
//! operator killed 20 times while tenants come and go, the API server and etcd restarted, two
//! leaders for a moment, a conflicting field manager, a Tenant edited every 100 ms, the webhook
//! gone for a while, a slow and lossy API. Every scenario must converge with no orphan, no
//! duplicate, no claim or key lost and no unexpected WARN or ERROR line in the operator's log.

use anyhow::{Result, ensure};
use enclave_tests::chaos::{self, Cluster, Row};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_converges_and_loses_nothing() -> Result<()> {
    let mut cluster = tokio::task::spawn_blocking(Cluster::start).await??;
    let mut rows: Vec<Row> = Vec::new();
    rows.push(chaos::kills(&mut cluster, 12, 20).await?);
    rows.push(chaos::restarts(&mut cluster).await?);
    rows.push(chaos::two_leaders(&mut cluster).await?);
    rows.push(chaos::conflicts(&mut cluster, 3).await?);
    rows.push(chaos::storm(&mut cluster, 10).await?);
    rows.push(chaos::webhook_outage(&mut cluster, 10).await?);
    rows.push(chaos::slow_api(&mut cluster, 5, Duration::from_millis(200), 5).await?);
    println!("{}", chaos::table(&rows));
    for row in &rows {
        ensure!(
            row.converged
                && row.orphans == 0
                && row.duplicates == 0
                && row.lost == 0
                && row.unexpected == 0,
            "{}: {row:?}",
            row.scenario
        );
    }
    let restarts = &rows[1];
    ensure!(
        restarts.p99 < 30.0,
        "the operator took {:.1}s to converge after the API came back (at most 30 s)",
        restarts.p99
    );
    Ok(())
}
