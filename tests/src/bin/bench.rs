//! `hack/bench.sh`: the scale benchmark. For each N, a fresh local control plane, N tenants
//! created against the release operator and the same objects applied by a bare client; prints
//! the table, writes it as JSON and plots time and memory against N (PNG).
//!
//! Usage: bench [--full N]... [--one-by-one N] [--out DIR] [N...]
//! (defaults: 100 300 1000 minimal tenants, 100 full ones, 20 one by one, `target/bench`).

use anyhow::{Context as _, Result};
use enclave_tests::bench::{self, Profile, Row};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

struct Args {
    minimal: Vec<usize>,
    full: Vec<usize>,
    one_by_one: usize,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut args = Args {
        minimal: Vec::new(),
        full: Vec::new(),
        one_by_one: 20,
        out: enclave_tests::controlplane::repo_root().join("target/bench"),
    };
    let mut full_given = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--full" => {
                full_given = true;
                args.full.push(value()?.parse()?);
            }
            "--one-by-one" => args.one_by_one = value()?.parse()?,
            "--out" => args.out = value()?.into(),
            n => args
                .minimal
                .push(n.parse().with_context(|| format!("not a count: {n}"))?),
        }
    }
    if args.minimal.is_empty() && !full_given {
        args.minimal = vec![100, 300, 1000];
        args.full = vec![100];
    }
    Ok(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = args()?;
    std::fs::create_dir_all(&args.out)?;
    let runs = (args.minimal.iter().map(|n| (Profile::Minimal, *n)))
        .chain(args.full.iter().map(|n| (Profile::Full, *n)));
    let mut rows: Vec<Row> = Vec::new();
    for (profile, n) in runs {
        eprintln!("==> {profile:?}: {n} tenants");
        match bench::run(profile, n, args.one_by_one).await {
            Ok(row) => {
                eprint!("{}", bench::table(std::slice::from_ref(&row)));
                eprintln!(
                    "    requests of the forced reconciles: {:?}",
                    row.reads_by_kind
                );
                eprintln!(
                    "    cold start: {:.1} writes per tenant: {:?}",
                    row.cold_writes_per_tenant, row.cold_requests
                );
                rows.push(row);
            }
            Err(error) => eprintln!("    failed: {error:#}"),
        }
        std::fs::write(
            args.out.join("bench.json"),
            serde_json::to_string_pretty(&rows)?,
        )?;
    }
    print!("{}", bench::table(&rows));
    let png = args.out.join("bench.png");
    match plot(&rows, &png) {
        Ok(()) => eprintln!(
            "==> {} and {}",
            args.out.join("bench.json").display(),
            png.display()
        ),
        Err(error) => eprintln!("==> no plot: {error:#}"),
    }
    Ok(())
}

/// Time to all Ready (Enclave and the bare client) and the operator's RSS against N, for the
/// minimal profile.
fn plot(rows: &[Row], path: &Path) -> Result<()> {
    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .context("no TrueType font (fonts-dejavu-core) for the plot's labels")?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("the font does not load"))?;
    let minimal: Vec<&Row> = rows.iter().filter(|r| r.profile == "minimal").collect();
    anyhow::ensure!(!minimal.is_empty(), "no minimal run to plot");
    #[allow(clippy::cast_precision_loss)]
    let max_n = minimal.iter().map(|r| r.tenants).max().unwrap_or(1) as f64 * 1.05;
    let max_t = minimal
        .iter()
        .map(|r| r.operator_seconds.max(r.bare_seconds))
        .fold(1.0, f64::max)
        * 1.1;
    let max_m = minimal
        .iter()
        .map(|r| r.operator_rss_mib)
        .fold(64.0, f64::max)
        * 1.1;
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    #[allow(clippy::cast_precision_loss)]
    let points = |f: fn(&Row) -> f64| -> Vec<(f64, f64)> {
        minimal.iter().map(|r| (r.tenants as f64, f(r))).collect()
    };
    let mut chart = ChartBuilder::on(&left)
        .caption("Cold start to all Ready", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..max_n, 0f64..max_t)?;
    chart
        .configure_mesh()
        .x_desc("tenants")
        .y_desc("seconds")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            points(|r| r.operator_seconds),
            RED.stroke_width(2),
        ))?
        .label("Enclave")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(LineSeries::new(
            points(|r| r.bare_seconds),
            BLUE.stroke_width(2),
        ))?
        .label("bare client (SSA)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart.configure_series_labels().border_style(BLACK).draw()?;
    let mut chart = ChartBuilder::on(&right)
        .caption("Operator memory (release)", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..max_n, 0f64..max_m)?;
    chart
        .configure_mesh()
        .x_desc("tenants")
        .y_desc("RSS MiB")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            points(|r| r.operator_rss_mib),
            RED.stroke_width(2),
        ))?
        .label("RSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 64.0), (max_n, 64.0)],
            BLACK.mix(0.5),
        ))?
        .label("64 MiB target")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
