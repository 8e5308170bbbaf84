//! The `flowlane` command line: bad input (exit code 2), setup errors (one
//! line naming the cause, exit 1, nothing left behind), and `flowlane demo`
//! from start to finish (and after Ctrl-C) leaving no namespace, link, tap
//! or XDP program behind.
//!
//! Tests that need root print "skipped: needs root" and pass without it,
//! unless `CI=true`, where a skip fails the test.

mod netkit;

use std::process::Command;
use std::time::Duration as StdDuration;

use flowlane::phy::sys::{netns, NetNs, VethPair};

use netkit::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(flowlane_bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let serve = [
        "serve",
        "--device",
        "tap",
        "--ifname",
        "fltestx0",
        "--ip",
        "10.77.0.2/24",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v: Vec<&str> = serve.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["frobnicate"], "frobnicate"),
        (vec![], "Usage"),
        (vec!["serve"], "--device"),
        (
            vec![
                "serve",
                "--device",
                "dpdk",
                "--ifname",
                "x",
                "--ip",
                "10.77.0.2/24",
            ],
            "dpdk",
        ),
        (
            vec![
                "serve",
                "--device",
                "tap",
                "--ifname",
                "x",
                "--ip",
                "10.77.0.2",
            ],
            "ADDR/PREFIX",
        ),
        (
            vec![
                "serve",
                "--device",
                "tap",
                "--ifname",
                "x",
                "--ip",
                "10.77.0.300/24",
            ],
            "IPv4",
        ),
        (
            vec![
                "serve",
                "--device",
                "tap",
                "--ifname",
                "x",
                "--ip",
                "10.77.0.2/33",
            ],
            "prefix",
        ),
        (with(&["--port", "0"]), "--port"),
        (with(&["--port", "http"]), "--port"),
        (with(&["--app", "ftp"]), "ftp"),
        (with(&["--cores", "0"]), "--cores"),
        (with(&["--stats-interval=-1"]), "--stats-interval"),
        (with(&["--stats-interval", "soon"]), "--stats-interval"),
        (with(&["--gateway", "nowhere"]), "--gateway"),
        (with(&["--frobnicate"]), "--frobnicate"),
        (with(&["--tap-host-ip", "10.77.0.2/24"]), "--tap-host-ip"),
        (
            vec![
                "serve",
                "--device",
                "xdp",
                "--ifname",
                "x",
                "--ip",
                "10.77.0.2/24",
                "--tap-host-ip",
                "10.77.0.1/24",
            ],
            "--tap-host-ip",
        ),
        (vec!["demo", "--seconds", "0"], "--seconds"),
        (vec!["demo", "--conns", "many"], "--conns"),
    ];
    for (args, needle) in cases {
        let (code, out, err) = run(&args);
        assert_eq!(
            code, 2,
            "{args:?}: exit {code}\nstdout: {out}\nstderr: {err}"
        );
        assert!(
            err.contains(needle),
            "{args:?}: the message should name {needle:?}: {err}"
        );
    }
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("serve") && out.contains("demo"), "{out}");
}

/// stderr is one line naming `needle`, the exit code 1.
fn one_line_error(args: &[&str], needle: &str) -> String {
    let (code, out, err) = run(args);
    assert_eq!(
        code, 1,
        "{args:?}: exit {code}\nstdout: {out}\nstderr: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: should name {needle:?}: {err}"
    );
    println!("{args:?}: {}", err.trim());
    err
}

#[test]
fn setup_errors_name_their_cause_and_leave_nothing() {
    if !root_or_skip("setup_errors_name_their_cause_and_leave_nothing") {
        return;
    }
    // No such interface.
    one_line_error(
        &[
            "serve",
            "--device",
            "xdp",
            "--ifname",
            "flnosuch0",
            "--ip",
            "10.77.0.2/24",
        ],
        "flnosuch0",
    );
    // A queue that cannot be bound: two cores on a one-queue veth. Queue 0
    // was set up first; the failure must take its XDP program away too.
    let ns = NetNs::new().unwrap();
    let veth = VethPair::new(&ns).unwrap();
    let ip = format!("{}/24", veth.flowlane_addr());
    let name = veth.local_name().to_string();
    one_line_error(
        &[
            "serve", "--device", "xdp", "--ifname", &name, "--ip", &ip, "--cores", "2",
        ],
        "queue 1",
    );
    let shown = netns::ip(&["link", "show", "dev", &name]).unwrap();
    assert!(
        !shown.contains("prog/xdp"),
        "XDP program left on {name}: {shown}"
    );
    // A tap whose name is taken by another kind of interface.
    one_line_error(
        &["serve", "--device", "tap", "--ifname", &name, "--ip", &ip],
        &name,
    );
    assert!(netns::ip(&["link", "show", "dev", &name]).is_ok());
    // A failure after the tap was made (the capture file cannot be
    // created): the new tap is removed again.
    let tap = netns::unique_name('t');
    let (code, _, err) = run_in(
        &ns,
        &[
            "serve",
            "--device",
            "tap",
            "--ifname",
            &tap,
            "--ip",
            "10.77.0.2/24",
            "--tap-host-ip",
            "10.77.0.1/24",
            "--pcap",
            "/nonexistent/dir/x.pcap",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--pcap"), "{err}");
    assert!(
        ns.ip(&["link", "show", "dev", &tap]).is_err(),
        "tap {tap} left behind"
    );
    // No permission (an unprivileged user).
    if std::path::Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(flowlane_bin())
            .args([
                "serve",
                "--device",
                "tap",
                "--ifname",
                "flnoperm0",
                "--ip",
                "10.77.0.2/24",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        println!("unprivileged serve: {}", err.trim());
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("permission") || err.contains("not permitted"),
            "{err}"
        );
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(flowlane_bin())
            .args(["demo", "--seconds", "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        println!("unprivileged demo: {}", err.trim());
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("needs root"), "{err}");
    }
}

fn run_in(ns: &NetNs, args: &[&str]) -> (i32, String, String) {
    let (st, out, err) = run_flowlane(Some(ns), args, StdDuration::from_secs(30));
    (st.code().unwrap_or(-1), out, err)
}

/// Namespaces and links whose names carry `pid`'s prefix.
fn leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("fl{pid:x}");
    let mut left = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for l in String::from_utf8_lossy(&ns.stdout).lines() {
        if l.starts_with(&prefix) {
            left.push(format!("namespace {l}"));
        }
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        if l.split_whitespace()
            .nth(1)
            .is_some_and(|n| n.starts_with(&prefix))
        {
            left.push(format!("link {l}"));
        }
    }
    left
}

/// The frames the demo's flowlane server received, from the device line
/// it prints after its table.
fn device_rx_frames(out: &str) -> u64 {
    out.split("flowlane's device: rx frames ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no device line:\n{out}"))
}

#[test]
fn demo_runs_to_the_end_and_cleans_up() {
    if !root_or_skip("demo_runs_to_the_end_and_cleans_up") {
        return;
    }
    let p = Proc::spawn(None, &["demo".into(), "--seconds".into(), "3".into()]);
    let pid = p.pid();
    let (st, out, err) = p.wait(StdDuration::from_secs(120));
    println!("{out}");
    assert!(
        st.success(),
        "demo exited {st}\nstdout:\n{out}\nstderr:\n{err}"
    );
    for needle in [
        "keep-alive requests/s",
        "latency p50",
        "latency p99",
        "short connections/s",
        "retransmits, server",
        "server sockets at end",
        "flowlane / Linux",
        "cleanup:",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
    }
    assert!(
        out.contains("requests/s, errors"),
        "no progress lines:\n{out}"
    );
    assert!(device_rx_frames(&out) > 0, "{out}");
    let left = leftovers(pid);
    assert!(left.is_empty(), "demo left behind: {left:?}");
}

#[test]
fn demo_on_tap_runs_and_cleans_up() {
    if !root_or_skip("demo_on_tap_runs_and_cleans_up") {
        return;
    }
    let p = Proc::spawn(
        None,
        &["demo", "--seconds", "2", "--conns", "2", "--device", "tap"].map(String::from),
    );
    let pid = p.pid();
    let (st, out, err) = p.wait(StdDuration::from_secs(120));
    println!("{out}");
    assert!(
        st.success(),
        "demo exited {st}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("over tap "), "{out}");
    assert!(out.contains("flowlane / Linux"), "{out}");
    assert!(device_rx_frames(&out) > 0, "{out}");
    let left = leftovers(pid);
    assert!(left.is_empty(), "demo left behind: {left:?}");
}

#[test]
fn demo_interrupted_cleans_up() {
    if !root_or_skip("demo_interrupted_cleans_up") {
        return;
    }
    let mut p = Proc::spawn(None, &["demo", "--seconds", "60"].map(String::from));
    let pid = p.pid();
    p.wait_for_output("requests/s, errors", StdDuration::from_secs(60));
    p.signal("INT");
    let (st, out, err) = p.wait(StdDuration::from_secs(30));
    println!("{out}");
    assert_eq!(st.code(), Some(130), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("interrupted"), "{out}");
    let left = leftovers(pid);
    assert!(left.is_empty(), "interrupted demo left behind: {left:?}");
}
