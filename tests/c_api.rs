//! The C API from C. `include/flowlane.h` must be what cbindgen generates
//! from `src/ffi` now, and compile as C99 and C++. The programs in
//! `c-examples/` are built with their Makefile (through pkg-config) against
//! the release library and run with the Linux kernel as the peer, each test
//! in network namespaces of its own (names `fl...`, addresses in
//! 10.77.0.0/16, all removed on drop): on a tap and on AF_XDP (a veth pair,
//! generic XDP, two queues and two cores). `echo_server` also runs under
//! valgrind's memcheck.
//!
//! The network tests need root. Without it they print "skipped: needs root"
//! and pass, unless `CI=true`, where a skip fails (CI runs as root).
//! `FLOWLANE_BLESS=1 cargo test --test c_api header` rewrites the header.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use flowlane::phy::sys::{is_root, netns, NetNs, VethConfig, VethPair};
use sha2::{Digest, Sha256};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and CI=true forbids skipping");
    }
    eprintln!("{test}: skipped: needs root");
    false
}

/// True if `tool` runs; otherwise prints the skip (and fails under
/// CI=true, where scripts/test.sh installed it).
fn tool_or_skip(test: &str, tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: `{tool}` is not installed (scripts/test.sh installs it)");
    }
    eprintln!("{test}: skipped: `{tool}` is not installed");
    false
}

/// Where cargo puts its builds.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => Path::new(ROOT).join(d),
        None => Path::new(ROOT).join("target"),
    }
}

/// One network test at a time: they share two CPUs with each other and
/// with the kernel peer, and their timing bounds assume that.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ----- the header ---------------------------------------------------------------------

fn generated_header() -> String {
    let config =
        cbindgen::Config::from_file(format!("{ROOT}/cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_src(format!("{ROOT}/src/ffi/mod.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn header_is_what_cbindgen_generates_from_src_ffi() {
    let path = format!("{ROOT}/include/flowlane.h");
    let fresh = generated_header();
    if std::env::var("FLOWLANE_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or(committed.lines().count().min(fresh.lines().count()), |i| i)
            + 1;
        panic!(
            "include/flowlane.h is stale (first difference at line {line}); regenerate it with \
             `FLOWLANE_BLESS=1 cargo test --test c_api header` and commit it"
        );
    }
}

#[test]
fn header_compiles_as_c99_and_as_cpp() {
    let test = "header_compiles_as_c99_and_as_cpp";
    if !tool_or_skip(test, "gcc") || !tool_or_skip(test, "g++") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("flowlane-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = "#include \"flowlane.h\"\n\
               int main(void) { struct fl_stats s; fl_loop_fn f = 0; (void)f; \
               return (int)sizeof s.states / 8 == FL_TCP_STATE_COUNT ? 0 : 1; }\n";
    for (compiler, file, std) in [("gcc", "h.c", "-std=c99"), ("g++", "h.cpp", "-std=c++11")] {
        let f = dir.join(file);
        std::fs::write(&f, src).unwrap();
        let out = Command::new(compiler)
            .args([
                std,
                "-pedantic",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-fsyntax-only",
            ])
            .arg(format!("-I{ROOT}/include"))
            .arg(&f)
            .output()
            .unwrap_or_else(|e| panic!("{compiler}: {e}"));
        assert!(
            out.status.success(),
            "{compiler} {std}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- building the examples ---------------------------------------------------------

/// Builds the release library and the examples once per test binary;
/// returns the directory with the binaries.
fn examples() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let out = Command::new(cargo)
            .args(["build", "--release", "--lib"])
            .current_dir(ROOT)
            .output()
            .map_err(|e| format!("cargo build --release: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo build --release failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let dir = target_dir().join("c-examples");
        let out = Command::new("make")
            .arg("-C")
            .arg(format!("{ROOT}/c-examples"))
            .arg(format!("OUT={}", dir.display()))
            .arg(format!("LIBDIR={}", target_dir().join("release").display()))
            .output()
            .map_err(|e| format!("make: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "make -C c-examples failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    match built {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn examples_build_through_pkg_config_and_cpp_links_the_shared_library() {
    let test = "examples_build_through_pkg_config_and_cpp_links_the_shared_library";
    for tool in ["gcc", "g++", "make", "pkg-config"] {
        if !tool_or_skip(test, tool) {
            return;
        }
    }
    let dir = examples();
    for p in [
        "echo_server",
        "http_server",
        "client",
        "errno_check",
        "cpp_check",
    ] {
        assert!(dir.join(p).exists(), "{p} was not built");
    }
    let pc = std::fs::read_to_string(dir.join("flowlane.pc")).unwrap();
    assert!(pc.contains("Libs: -L") && pc.contains("-lflowlane"), "{pc}");
    let out = Command::new(dir.join("cpp_check")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cpp_check: {stdout}");
    assert!(stdout.contains(": ok"), "{stdout}");
    // The shared library exports the API and nothing of Rust's own.
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(target_dir().join("release/libflowlane.so"))
        .output();
    if let Ok(nm) = nm {
        let syms = String::from_utf8_lossy(&nm.stdout);
        for f in [
            "fl_start",
            "fl_run",
            "fl_epoll_wait",
            "fl_stats_get",
            "fl_socket",
        ] {
            assert!(syms.contains(f), "{f} not exported");
        }
    }
}

// ----- topologies ---------------------------------------------------------------------

/// Where a C program runs and who its kernel peer is.
struct Net {
    /// The namespace the C program runs in.
    prog_ns: NetNs,
    /// The kernel peer's namespace (the same one for a tap).
    peer_ns: Option<NetNs>,
    flowlane: Ipv4Addr,
    peer: Ipv4Addr,
    /// The device keys for the program.
    device: Vec<String>,
    _veth: Option<VethPair>,
    what: &'static str,
}

impl Net {
    /// A tap the program creates in a fresh namespace; the kernel side of
    /// the tap (10.77.x.1) is the peer, in the same namespace.
    fn tap(cores: usize) -> Net {
        let ns = NetNs::new().unwrap();
        let x = netns::unique_subnet();
        let flowlane = Ipv4Addr::new(10, 77, x, 2);
        let peer = Ipv4Addr::new(10, 77, x, 1);
        let ifname = netns::unique_name('t');
        Net {
            prog_ns: ns,
            peer_ns: None,
            flowlane,
            peer,
            device: vec![
                "device=tap".into(),
                format!("ifname={ifname}"),
                format!("ip={flowlane}/24"),
                format!("tap_host_ip={peer}/24"),
                format!("cores={cores}"),
            ],
            _veth: None,
            what: "tap",
        }
    }

    /// A veth pair between two fresh namespaces, one queue per core:
    /// AF_XDP (generic XDP) on the local end, the kernel on the other.
    fn xdp(cores: usize) -> Net {
        let a = NetNs::new().unwrap();
        let b = NetNs::new().unwrap();
        let veth = VethPair::with_config(VethConfig {
            local_ns: Some(&a),
            peer_ns: &b,
            queues: cores as u32,
        })
        .unwrap();
        Net {
            flowlane: veth.flowlane_addr(),
            peer: veth.peer_addr(),
            device: vec![
                "device=xdp".into(),
                format!("ifname={}", veth.local_name()),
                format!("ip={}/24", veth.flowlane_addr()),
                "xdp_attach=generic".into(),
                format!("cores={cores}"),
            ],
            prog_ns: a,
            peer_ns: Some(b),
            _veth: Some(veth),
            what: "AF_XDP",
        }
    }

    fn peer_ns(&self) -> &NetNs {
        self.peer_ns.as_ref().unwrap_or(&self.prog_ns)
    }

    /// Runs `f` with the kernel's network (sockets made there stay there).
    fn kernel<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.peer_ns().run(f).unwrap()
    }

    /// Starts example `name` in the program's namespace.
    fn spawn(&self, name: &str, args: &[String], valgrind: bool) -> Program {
        let bin = examples().join(name);
        let mut cmd = if valgrind {
            let mut c = self.prog_ns.command("valgrind");
            c.args([
                "--tool=memcheck",
                "--error-exitcode=1",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--show-leak-kinds=definite",
            ]);
            c.arg(&bin);
            c
        } else {
            self.prog_ns.command(bin.to_str().unwrap())
        };
        cmd.args(&self.device)
            .arg("idle=backoff")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Program::start(name, cmd)
    }
}

/// A running example: its output is collected line by line; dropped, it is
/// killed.
struct Program {
    name: String,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Program {
    fn start(name: &str, mut cmd: Command) -> Program {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            sink.lock().unwrap().push_str(&s);
        });
        Program {
            name: name.to_string(),
            child: Some(child),
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for a line containing `what`.
    fn wait_for(&mut self, what: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let hit = line.contains(what);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                        panic!(
                            "{} exited ({status}) before printing {what:?}:\n{}\n{}",
                            self.name,
                            self.seen.join("\n"),
                            self.stderr()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "{} did not print {what:?} within {limit:?}:\n{}\n{}",
            self.name,
            self.seen.join("\n"),
            self.stderr()
        );
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM (a graceful stop), then the exit status and all output.
    fn stop(mut self, limit: Duration) -> (bool, String, String) {
        let child = self.child.as_ref().unwrap();
        // kill(1), not kill(2) through libc: no `unsafe` outside src/phy/sys
        // and src/ffi. The child is ours and not yet reaped, so the pid is
        // still its own.
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        self.finish(limit)
    }

    /// Waits for the program to exit by itself.
    fn finish(&mut self, limit: Duration) -> (bool, String, String) {
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end with the pipes.
        std::thread::sleep(Duration::from_millis(100));
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        let out = self.seen.join("\n");
        let err = self.stderr();
        match status {
            Some(s) => (s.success(), out, err),
            None => (false, out, format!("{err}\n(killed after {limit:?})")),
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ----- kernel-side clients and servers ---------------------------------------------------

fn payload(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn connect(net: &Net, port: u16) -> TcpStream {
    let to = SocketAddrV4::new(net.flowlane, port);
    let s = net
        .kernel(|| TcpStream::connect_timeout(&to.into(), Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("kernel connect to {to} ({}): {e}", net.what));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Sends `data` on a fresh connection to the echo server, half-closes, and
/// returns what came back.
fn echo_through(net: &Net, port: u16, data: &[u8]) -> Vec<u8> {
    let stream = connect(net, port);
    let mut w = stream.try_clone().unwrap();
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            w.write_all(data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::with_capacity(data.len());
        let mut r = stream;
        let _ = r.read_to_end(&mut got);
        writer.join().unwrap();
        got
    })
}

/// One HTTP/1.1 response: status line, headers, body (by Content-Length).
fn read_response(r: &mut BufReader<TcpStream>) -> (String, String, String) {
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut headers = String::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        headers.push_str(&h);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    (status, headers, String::from_utf8(body).unwrap())
}

/// A kernel echo server on 0.0.0.0:`port` in the peer's namespace, until
/// dropped.
struct KernelEcho {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl KernelEcho {
    fn start(net: &Net, port: u16) -> KernelEcho {
        let l = net
            .kernel(|| TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)))
            .unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut served = 0;
            let mut workers = Vec::new();
            let end = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                match l.accept() {
                    Ok((mut s, _)) => {
                        served += 1;
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        workers.push(std::thread::spawn(move || {
                            let mut buf = vec![0u8; 64 << 10];
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 || s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for w in workers {
                let _ = w.join();
            }
            served
        });
        KernelEcho {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for KernelEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ----- the cases, on either device ------------------------------------------------------

const MIB16: usize = 16 << 20;

/// echo_server on two cores: 16 MiB echoed with an equal SHA-256, then a
/// few more connections so both cores serve some.
fn echo_server_echoes_16_mib(net: Net) {
    let port = 7000;
    let mut server = net.spawn("echo_server", &[format!("port={port}")], false);
    server.wait_for("ready", Duration::from_secs(20));
    let data = payload(MIB16);
    let t = Instant::now();
    let echoed = echo_through(&net, port, &data);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(echoed.len(), data.len(), "{}: echoed length", net.what);
    assert_eq!(
        sha(&echoed),
        sha(&data),
        "{}: SHA-256 of the echo",
        net.what
    );
    println!(
        "{}: 16 MiB echoed by the C echo_server in {:.2} s ({:.0} Mbit/s each way)",
        net.what,
        secs,
        MIB16 as f64 * 8.0 / secs / 1e6
    );
    for i in 0..16 {
        let small = payload(10_000 + i * 997);
        assert_eq!(echo_through(&net, port, &small), small, "{}", net.what);
    }
    let (ok, out, err) = server.stop(Duration::from_secs(20));
    println!("{out}");
    assert!(ok, "{}: echo_server exit: {out}\n{err}", net.what);
    assert!(out.contains("17 connections accepted, 17 closed"), "{out}");
    // fl_stats' device counters: the device (tap or AF_XDP socket) moved at
    // least the 16 MiB each way, in frames of at most 1514 bytes.
    let (rx, tx) = device_frames(&out, "echo_server");
    let min = (MIB16 / 1514) as u64;
    assert!(
        rx >= min && tx >= min,
        "{}: device rx {rx} tx {tx}:\n{out}",
        net.what
    );
}

/// The device's rx and tx frames from `example_print_stats`'s line
/// "WHO: device rx N frames, ...; tx M frames, ...".
fn device_frames(out: &str, who: &str) -> (u64, u64) {
    let prefix = format!("{who}: device rx ");
    let line = out
        .lines()
        .rfind(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no device line:\n{out}"));
    let number_after = |word: &str| -> u64 {
        line.split(word)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {word:?} in {line}"))
    };
    (number_after("device rx "), number_after("; tx "))
}

/// http_server on two cores: curl with keep-alive, a std client with
/// pipelined and sequential requests, garbage, and many short connections
/// that the RSS hash spreads over both cores.
fn http_server_serves_curl_and_std_clients_on_every_core(net: Net) {
    let port = 8080;
    let mut server = net.spawn("http_server", &[format!("port={port}")], false);
    server.wait_for("ready", Duration::from_secs(20));
    let url = format!("http://{}:{port}/", net.flowlane);
    let out = net
        .peer_ns()
        .exec("curl", &["-sSv", "--max-time", "10", &url, &url])
        .unwrap_or_else(|e| panic!("curl ({}): {e}", net.what));
    let body = String::from_utf8_lossy(&out.stdout);
    let verbose = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert_eq!(
        body.matches("hello from flowlane core").count(),
        2,
        "{body}"
    );
    assert!(
        verbose.contains("using existing connection"),
        "curl did not keep the connection alive:\n{verbose}"
    );

    // Keep-alive and pipelining from a std client.
    let s = connect(&net, port);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    for _ in 0..3 {
        w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (status, headers, body) = read_response(&mut r);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(
            headers.to_ascii_lowercase().contains("keep-alive"),
            "{headers}"
        );
        assert!(body.starts_with("hello from flowlane core"), "{body}");
    }
    w.write_all(b"GET / HTTP/1.1\r\n\r\nGET /stats HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, _, _) = read_response(&mut r);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (status, headers, body) = read_response(&mut r);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(headers.to_ascii_lowercase().contains("close"), "{headers}");
    assert!(body.contains("LISTEN 2"), "every core listens:\n{body}");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "data after Connection: close");

    // Garbage gets a 400 and a close.
    let mut g = connect(&net, port);
    g.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    g.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    // Short connections: HTTP/1.0 without keep-alive closes after one.
    for _ in 0..24 {
        let mut c = connect(&net, port);
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let (ok, out, err) = server.stop(Duration::from_secs(20));
    println!("{out}");
    assert!(ok, "{}: http_server exit: {out}\n{err}", net.what);
    for core in 0..2 {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("core {core} answered")))
            .unwrap_or_else(|| panic!("no count for core {core}:\n{out}"));
        let n: u64 = line
            .split_whitespace()
            .rev()
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap();
        assert!(
            n > 0,
            "core {core} answered no request ({}):\n{out}",
            net.what
        );
    }
}

/// client on two cores against a kernel echo server: every byte of every
/// connection comes back.
fn client_verifies_kernel_echo(net: Net) {
    let port = 7777;
    let kernel = KernelEcho::start(&net, port);
    let mut client = net.spawn(
        "client",
        &[
            format!("server={}:{port}", net.peer),
            "conns=32".into(),
            "bytes=262144".into(),
            "parallel=8".into(),
            "timeout_ms=60000".into(),
        ],
        false,
    );
    let (ok, out, err) = client.finish(Duration::from_secs(90));
    println!("{out}");
    assert!(ok, "{}: client failed:\n{out}\n{err}", net.what);
    assert!(
        out.contains("32 connections: 32 ok, 0 failed"),
        "{}: {out}",
        net.what
    );
    assert!(out.contains(&format!("{} bytes echoed and verified", 32 * 262144)));
    assert_eq!(kernel.finish(), 32);
}

// ----- on a tap -------------------------------------------------------------------------

#[test]
fn tap_errno_check_asserts_the_errno_of_every_misuse() {
    if !root_or_skip("tap_errno_check_asserts_the_errno_of_every_misuse") {
        return;
    }
    let _serial = serial();
    let net = Net::tap(2);
    let x = net.peer.octets()[2];
    let mut p = net.spawn(
        "errno_check",
        &[
            "syn_retries=1".into(),
            "initial_rto_ms=100".into(),
            format!("peer={}", net.peer),
            format!("nowhere=10.77.{x}.250"),
            "kport=7100".into(),
        ],
        false,
    );
    let (ok, out, err) = p.finish(Duration::from_secs(60));
    println!("{out}");
    assert!(ok, "errno_check failed:\n{out}\n{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    let passed: u32 = out
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 130, "only {passed} checks ran:\n{out}");
}

#[test]
fn tap_echo_server_echoes_16_mib_with_equal_sha256() {
    if !root_or_skip("tap_echo_server_echoes_16_mib_with_equal_sha256") {
        return;
    }
    let _serial = serial();
    echo_server_echoes_16_mib(Net::tap(2));
}

#[test]
fn tap_http_server_serves_curl_and_keep_alive_clients_on_every_core() {
    if !root_or_skip("tap_http_server_serves_curl_and_keep_alive_clients_on_every_core") {
        return;
    }
    let _serial = serial();
    http_server_serves_curl_and_std_clients_on_every_core(Net::tap(2));
}

#[test]
fn tap_client_verifies_the_echo_of_a_kernel_server() {
    if !root_or_skip("tap_client_verifies_the_echo_of_a_kernel_server") {
        return;
    }
    let _serial = serial();
    client_verifies_kernel_echo(Net::tap(2));
}

// ----- on AF_XDP ------------------------------------------------------------------------

#[test]
fn xdp_echo_server_echoes_16_mib_with_equal_sha256() {
    if !root_or_skip("xdp_echo_server_echoes_16_mib_with_equal_sha256") {
        return;
    }
    let _serial = serial();
    echo_server_echoes_16_mib(Net::xdp(2));
}

#[test]
fn xdp_http_server_serves_curl_and_keep_alive_clients_on_every_core() {
    if !root_or_skip("xdp_http_server_serves_curl_and_keep_alive_clients_on_every_core") {
        return;
    }
    let _serial = serial();
    http_server_serves_curl_and_std_clients_on_every_core(Net::xdp(2));
}

#[test]
fn xdp_client_verifies_the_echo_of_a_kernel_server() {
    if !root_or_skip("xdp_client_verifies_the_echo_of_a_kernel_server") {
        return;
    }
    let _serial = serial();
    client_verifies_kernel_echo(Net::xdp(2));
}

// ----- under valgrind -------------------------------------------------------------------

#[test]
fn echo_server_under_valgrind_has_no_errors_and_no_definite_leaks() {
    if !root_or_skip("echo_server_under_valgrind_has_no_errors_and_no_definite_leaks") {
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("valgrind is not installed (scripts/test.sh installs it)");
        }
        eprintln!("skipped: valgrind is not installed");
        return;
    }
    let _serial = serial();
    let net = Net::tap(2);
    let port = 7001;
    let mut server = net.spawn("echo_server", &[format!("port={port}")], true);
    server.wait_for("ready", Duration::from_secs(120));
    let data = payload(1 << 20);
    assert_eq!(sha(&echo_through(&net, port, &data)), sha(&data));
    for i in 0..8 {
        let small = payload(1000 + i * 333);
        assert_eq!(echo_through(&net, port, &small), small);
    }
    let (ok, out, err) = server.stop(Duration::from_secs(120));
    println!("{out}");
    let summary: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ERROR SUMMARY") || l.contains("definitely lost"))
        .collect();
    println!("{}", summary.join("\n"));
    assert!(ok, "echo_server under valgrind failed:\n{out}\n{err}");
    assert!(err.contains("ERROR SUMMARY: 0 errors"), "{err}");
    assert!(out.contains("9 connections accepted, 9 closed"), "{out}");
}
