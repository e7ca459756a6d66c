//! `r8s-bench store`: write throughput and latency of the store, 1 KiB values,
//! with 1 and with 64 concurrent writers, for the embedded raft store with one
//! server and with three (three processes on loopback), and for etcd with the
//! same durability (fsync on every commit, its default). Every backend is driven
//! through the same `store::Store` trait by the same loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store::Store;

use crate::stats::{ms, print_table, Samples};

#[derive(clap::Args)]
pub struct StoreBenchArgs {
    /// How long each measurement writes.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Size of each value.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Concurrent writers; one row per count.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64])]
    writers: Vec<usize>,
}

/// One row of the table.
struct Measurement {
    backend: &'static str,
    writers: usize,
    writes_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// `writers` tasks each create fresh keys back to back for `duration`.
async fn measure(
    store: Arc<dyn Store>,
    backend: &'static str,
    writers: usize,
    duration: Duration,
    value_size: usize,
) -> anyhow::Result<Measurement> {
    let value = Bytes::from(vec![b'x'; value_size]);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(writers);
    for writer in 0..writers {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("/bench/{backend}/{writers}/{writer}/{i}");
                let t = Instant::now();
                store.create(&key, value.clone()).await?;
                samples.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(samples)
        }));
    }
    let mut all = Samples::default();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = start.elapsed();
    Ok(Measurement {
        backend,
        writers,
        writes_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: all.percentile(50.0),
        p99: all.percentile(99.0),
    })
}

pub fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: StoreBenchArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.seconds);
    let mut rows = Vec::new();
    for backend in backends::ALL {
        let started = backend.start().await?;
        for &writers in &args.writers {
            eprintln!("store bench: {} with {writers} writers", backend.name());
            rows.push(measure(started.store(), backend.name(), writers, duration, args.value_size).await?);
        }
        drop(started);
    }
    print_rows(&rows, &args);
    Ok(())
}

fn print_rows(rows: &[Measurement], args: &StoreBenchArgs) {
    let etcd_rate = |writers| {
        rows.iter()
            .find(|m| m.backend == backends::ETCD && m.writers == writers)
            .map(|m| m.writes_per_sec)
    };
    println!(
        "Store writes: {} B values, fsync on, {} s per row, each write a create of a new key",
        args.value_size, args.seconds
    );
    println!();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            vec![
                m.backend.to_string(),
                m.writers.to_string(),
                format!("{:.0}", m.writes_per_sec),
                ms(m.p50),
                ms(m.p99),
                etcd_rate(m.writers).map_or("-".into(), |e| format!("{:.2}×", m.writes_per_sec / e)),
            ]
        })
        .collect();
    print_table(&["backend", "writers", "writes/s", "p50 ms", "p99 ms", "vs etcd"], &table);
}

pub(crate) mod backends;
