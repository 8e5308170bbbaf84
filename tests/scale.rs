//! Scale: one million established, idle connections between two stacks over
//! the in-memory link, then every one closed into TIME-WAIT. Memory is the
//! growth of the process's resident set while the connections open, so it
//! includes every table, slab, buffer and allocator overhead of both stacks.
//!
//! `FLOWLANE_SCALE_CONNS` sets the number (default 1 000 000).
//!
//! The figures also go to `<target dir>/flowlane-memory.json`, which
//! `examples/bench_report.rs` prints as its memory table.

use core::net::SocketAddrV4;

use flowlane::api::pair::{Pair, B_IP};
use flowlane::api::{SocketHandle, State};
use flowlane::phy::{Link, LinkConfig};
use flowlane::time::Duration;
/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

const SERVER_PORTS: u16 = 20;

/// The UTC date of `secs` since the Unix epoch, as `YYYY-MM-DD` (Howard
/// Hinnant's `civil_from_days`; no date crate for one line of output).
fn utc_date(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Writes the memory figures where `bench_report` reads them: the target
/// directory this test was built in (so `CARGO_TARGET_DIR` is honoured).
fn write_memory_json(figures: &serde_json::Value) {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    let path = target.join("flowlane-memory.json");
    let text = serde_json::to_string_pretty(figures).unwrap() + "\n";
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!("memory figures written to {}", path.display());
}

#[test]
fn utc_dates_from_unix_seconds() {
    assert_eq!(utc_date(0), "1970-01-01");
    assert_eq!(utc_date(951_782_400), "2000-02-29");
    assert_eq!(utc_date(1_735_689_599), "2024-12-31");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a million connections: scripts/test.sh runs it with --release"
)]
fn a_million_idle_connections_fit_in_a_gibibyte_and_time_wait_records_in_64_bytes() {
    let n: usize = std::env::var("FLOWLANE_SCALE_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let (mut a, mut b) = Pair::configs();
    // Enough 4-tuples: 64 000 client ports x 20 server ports.
    a.endpoint.local_ports = (1024, 65535);
    for c in [&mut a, &mut b] {
        c.endpoint.tcp.rx_buffer = 4096;
        c.endpoint.tcp.tx_buffer = 4096;
        c.iface.rx_burst = 256;
        c.iface.tx_burst = 1024;
    }
    let mut p = Pair::with(Link::new(LinkConfig::default(), 1), a, b);
    let mut listeners = Vec::new();
    for port in 0..SERVER_PORTS {
        let l = p.b.tcp.socket().unwrap();
        p.b.tcp
            .bind(l, SocketAddrV4::new(B_IP, 10000 + port))
            .unwrap();
        p.b.tcp.listen(l, 4096).unwrap();
        listeners.push(l);
    }
    let mut servers: Vec<SocketHandle> = Vec::with_capacity(n);
    // Warm up the ARP caches and tables before counting.
    p.run_for(Duration::from_millis(1));
    let before = rss_bytes();
    let started = std::time::Instant::now();
    let mut clients: Vec<SocketHandle> = Vec::with_capacity(n);
    let mut opened = 0usize;
    while opened < n {
        // Open in waves of 2000 so the accept queues never overflow.
        let wave = (n - opened).min(2000);
        for i in 0..wave {
            let port = 10000 + ((opened + i) % SERVER_PORTS as usize) as u16;
            let h = p.a.tcp.socket().unwrap();
            let now = p.now;
            p.a.tcp
                .connect(h, now, SocketAddrV4::new(B_IP, port))
                .unwrap();
            clients.push(h);
        }
        opened += wave;
        assert!(p.run_until(Duration::from_secs(10), |p| {
            for l in &listeners {
                while let Ok((h, _)) = p.b.tcp.accept(*l) {
                    servers.push(h);
                }
            }
            servers.len() == opened
        }));
    }
    let open_time = started.elapsed();
    let open_rate = n as f64 / open_time.as_secs_f64();
    let counts_a = p.a.tcp.state_counts();
    assert_eq!(counts_a[State::Established as usize], n as u64);
    let held = rss_bytes() - before - (clients.capacity() + servers.capacity()) * 8;
    let per_conn = held as f64 / (2 * n) as f64;
    eprintln!(
        "{n} connections opened in {:.2} s ({:.0}/s); resident memory of both stacks: {:.1} MiB \
         = {per_conn:.0} B per connection per side",
        open_time.as_secs_f64(),
        open_rate,
        held as f64 / (1 << 20) as f64
    );
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut figures = serde_json::json!({
        "connections": n,
        "idle_established_bytes_per_connection_per_side": per_conn,
        "idle_established_mib_per_stack": held as f64 / 2.0 / (1 << 20) as f64,
        "connections_opened_per_second": open_rate,
        "date": utc_date(unix),
        "unix_time": unix,
    });
    // Written now and again with the TIME-WAIT figures, so a failure in
    // the close phase still leaves the idle figures for the report.
    write_memory_json(&figures);
    assert!(
        held / 2 < (1 << 30),
        "a million connections in under 1 GiB per stack"
    );

    // Every client closes: the client side goes to TIME-WAIT records.
    let now = p.now;
    for h in &clients {
        p.a.tcp.close(*h, now).unwrap();
    }
    // The servers close when they see the clients' FINs.
    let all_close_wait = p.run_until(Duration::from_secs(20), |p| {
        p.b.tcp.state_counts()[State::CloseWait as usize] == n as u64
    });
    assert!(
        all_close_wait,
        "not every server in CLOSE-WAIT at {:?}: client states {:?}, server states {:?} \
         (indexed by State)",
        p.now,
        p.a.tcp.state_counts(),
        p.b.tcp.state_counts()
    );
    let now = p.now;
    for h in &servers {
        p.b.tcp.close(*h, now).unwrap();
    }
    assert!(p.run_until(Duration::from_secs(20), |p| {
        p.a.tcp.time_wait_count() == n && p.a.tcp.connection_count() == 0
    }));
    let tw_bytes = p.a.tcp.time_wait_memory() as f64 / n as f64;
    eprintln!(
        "{n} TIME-WAIT records: {tw_bytes:.1} B per record, table overhead included \
         (record {} B)",
        core::mem::size_of::<flowlane::tcp::timewait::TimeWaitRecord>()
    );
    assert_eq!(p.a.tcp.state_counts()[State::TimeWait as usize], n as u64);
    figures["time_wait_records"] = n.into();
    figures["time_wait_bytes_per_record"] = tw_bytes.into();
    figures["time_wait_record_size"] =
        core::mem::size_of::<flowlane::tcp::timewait::TimeWaitRecord>().into();
    write_memory_json(&figures);
    assert!(tw_bytes <= 64.0, "{tw_bytes} B per TIME-WAIT record");
    // 2MSL later they are all gone.
    p.run_for(Duration::from_secs(61));
    assert_eq!(p.a.tcp.time_wait_count(), 0);
}
