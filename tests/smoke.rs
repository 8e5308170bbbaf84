use core::net::SocketAddrV4;
use flowlane::api::pair::{Pair, A_IP, B_IP};
use flowlane::api::State;
use flowlane::time::Duration;

#[test]
fn smoke_handshake_and_echo() {
    let mut p = Pair::new(1);
    let l = p.b.tcp.socket().unwrap();
    p.b.tcp.bind(l, SocketAddrV4::new(B_IP, 80)).unwrap();
    p.b.tcp.listen(l, 16).unwrap();
    let c = p.a.tcp.socket().unwrap();
    let now = p.now;
    p.a.tcp
        .connect(c, now, SocketAddrV4::new(B_IP, 80))
        .unwrap();
    assert!(
        p.run_until(Duration::from_secs(1), |p| p.a.tcp.state(c).unwrap()
            == State::Established)
    );
    let mut s = None;
    assert!(p.run_until(Duration::from_secs(1), |p| {
        s = p.b.tcp.accept(l).ok();
        s.is_some()
    }));
    let (s, peer) = s.unwrap();
    assert_eq!(*peer.ip(), A_IP);
    assert_eq!(p.a.tcp.send(c, b"hello").unwrap(), 5);
    let mut buf = [0u8; 16];
    assert!(p.run_until(Duration::from_secs(1), |p| p
        .b
        .tcp
        .recv(s, &mut buf)
        .map(|n| n == 5)
        .unwrap_or(false)));
    assert_eq!(&buf[..5], b"hello");
    eprintln!("{:?}", p.a.iface.counters());
    eprintln!("{:?}", p.b.tcp.counters());
}
