//! One `Stack` driven through a fake device: frames built by hand or with
//! the wire emitters go in, and the exact frames that come out are checked
//! field by field (ARP per RFC 826, ICMP echo per RFC 792, the RST of RFC
//! 9293 §3.10.7.1), as are the interface's per-reason drop counters.

mod framekit;
use framekit as common;

use core::net::{Ipv4Addr, SocketAddrV4};

use common::{
    arp_frame, icmp_frame, internet_checksum, ipv4_frame, parse_tcp, pseudo_header, segment,
    tcp_frame, QueueDevice as FakeDevice,
};
use flowlane::api::{Stack, StackConfig, State};
use flowlane::time::{Duration, Instant};
use flowlane::wire::{
    self, ArpOperation, ArpRepr, EthernetAddress, EthernetFrame, Icmpv4Repr, IpProtocol,
    Ipv4Packet, TcpFlags, TcpPacket,
};

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OTHER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x03]);
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);

/// A stack, its fake device and a virtual clock.
struct Host {
    stack: Stack,
    dev: FakeDevice,
    now: Instant,
}

impl Host {
    fn new() -> Host {
        Host::with(StackConfig::new(OUR_MAC, OUR_IP, 24))
    }

    fn with(config: StackConfig) -> Host {
        Host {
            stack: Stack::new(config),
            dev: FakeDevice::default(),
            now: Instant::ZERO,
        }
    }

    /// Knows the peer's MAC, so replies go out without ARP.
    fn knowing_peer() -> Host {
        let mut h = Host::new();
        h.stack
            .iface
            .add_neighbor(PEER_IP, PEER_MAC, Instant::FAR_FUTURE);
        h
    }

    /// Delivers `frame` and polls once; returns what was transmitted.
    fn feed(&mut self, frame: Vec<u8>) -> Vec<Vec<u8>> {
        self.dev.rx.push_back(frame);
        self.poll()
    }

    fn poll(&mut self) -> Vec<Vec<u8>> {
        let now = self.now;
        self.stack.poll(now, &mut self.dev);
        std::mem::take(&mut self.dev.tx)
    }

    /// Polls at every deadline up to `until`; returns (time, frame) pairs.
    fn run_until(&mut self, until: Instant) -> Vec<(Instant, Vec<u8>)> {
        common::poll_until(&mut self.stack, &mut self.dev, &mut self.now, until)
    }

    fn connect(&mut self, to: Ipv4Addr, port: u16) {
        let c = self.stack.tcp.socket().unwrap();
        let now = self.now;
        self.stack
            .tcp
            .connect(c, now, SocketAddrV4::new(to, port))
            .unwrap();
    }
}

/// An RFC 826 Ethernet/IPv4 ARP packet in an Ethernet frame, by hand.
fn arp_bytes(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0x00, 0x01]); // ar$hrd: Ethernet
    f.extend_from_slice(&[0x08, 0x00]); // ar$pro: IPv4
    f.push(6); // ar$hln
    f.push(4); // ar$pln
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

fn who_has(target: Ipv4Addr) -> Vec<u8> {
    arp_bytes(
        [0xff; 6], PEER_MAC.0, 1, PEER_MAC.0, PEER_IP, [0; 6], target,
    )
}

fn syn_to(port: u16) -> Vec<u8> {
    tcp_frame(
        PEER_MAC,
        OUR_MAC,
        PEER_IP,
        OUR_IP,
        &segment(40000, port, 1000, 0, TcpFlags::SYN),
    )
}

fn listen(h: &mut Host, port: u16) {
    let l = h.stack.tcp.socket().unwrap();
    h.stack
        .tcp
        .bind(l, SocketAddrV4::new(OUR_IP, port))
        .unwrap();
    h.stack.tcp.listen(l, 16).unwrap();
}

/// The frame is dropped, counted under `reason` and nowhere else, reaches no
/// socket and provokes no reply.
fn assert_dropped_as(frame: Vec<u8>, reason: wire::Error) {
    let mut h = Host::knowing_peer();
    listen(&mut h, 80);
    let out = h.feed(frame);
    assert!(out.is_empty(), "reply to a malformed frame: {out:02x?}");
    let c = h.stack.iface.counters();
    let mut expected = [0u64; wire::Error::COUNT];
    expected[reason.index()] = 1;
    assert_eq!(c.drops, expected, "expected only {reason:?}");
    assert_eq!(c.rx_frames, 1);
    assert_eq!(c.not_for_us + c.unsupported + c.bad_source, 0);
    assert_eq!(h.stack.tcp.counters().segments_in, 0);
}

/// A TCP segment given as raw bytes (header and payload), inside a valid
/// Ethernet/IPv4 frame, with its checksum filled in.
fn raw_tcp(mut segment_bytes: Vec<u8>) -> Vec<u8> {
    TcpPacket::new_unchecked(&mut segment_bytes[..]).fill_checksum(PEER_IP, OUR_IP);
    ipv4_frame(
        PEER_MAC,
        OUR_MAC,
        PEER_IP,
        OUR_IP,
        IpProtocol::Tcp,
        |buf| buf.copy_from_slice(&segment_bytes),
        segment_bytes.len(),
    )
}

/// A 20-byte TCP header 40000 -> 80, SYN, with `data_offset` words.
fn tcp_header(data_offset: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&80u16.to_be_bytes());
    h[4..8].copy_from_slice(&1000u32.to_be_bytes());
    h[12] = data_offset << 4;
    h[13] = 0x02;
    h[14..16].copy_from_slice(&65535u16.to_be_bytes());
    h
}

// ----- ARP ------------------------------------------------------------------

#[test]
fn arp_request_for_our_ip_gets_a_reply_with_exact_rfc826_fields() {
    let mut h = Host::new();
    let out = h.feed(who_has(OUR_IP));
    // RFC 826: swap sender and target, put our addresses in the sender
    // fields, set ar$op to reply, send to the requester (unicast).
    let expected = arp_bytes(
        PEER_MAC.0, OUR_MAC.0, 2, OUR_MAC.0, OUR_IP, PEER_MAC.0, PEER_IP,
    );
    assert_eq!(out, vec![expected]);
    assert_eq!(h.stack.iface.counters().arp_replies_sent, 1);
    assert_eq!(h.stack.iface.counters().not_for_us, 0);
}

#[test]
fn arp_request_for_another_ip_gets_no_reply_is_counted_and_teaches_nothing() {
    let mut h = Host::new();
    let out = h.feed(who_has(OTHER_IP));
    assert!(out.is_empty());
    let c = h.stack.iface.counters();
    assert_eq!(c.not_for_us, 1);
    assert_eq!(c.arp_replies_sent, 0);
    // RFC 826 merge rule: an unknown sender is only added when we are the
    // target.
    assert_eq!(h.stack.iface.neighbor(PEER_IP, h.now), None);
}

#[test]
fn arp_request_addressed_to_us_teaches_the_cache_the_sender() {
    let mut h = Host::new();
    h.feed(who_has(OUR_IP));
    assert_eq!(h.stack.iface.neighbor(PEER_IP, h.now), Some(PEER_MAC));
    // The learnt entry is used at once: a SYN to the peer needs no request.
    h.connect(PEER_IP, 80);
    let out = h.poll();
    assert_eq!(out.len(), 1);
    let (eth, ip, tcp) = parse_tcp(&out[0]).expect("a TCP frame");
    assert_eq!((eth.dst_addr, eth.src_addr), (PEER_MAC, OUR_MAC));
    assert_eq!((ip.src_addr, ip.dst_addr), (OUR_IP, PEER_IP));
    assert_eq!(tcp.flags, TcpFlags::SYN);
    assert_eq!(h.stack.iface.counters().arp_requests_sent, 0);
}

#[test]
fn arp_from_a_known_sender_updates_its_entry_even_when_not_for_us() {
    let mut h = Host::knowing_peer();
    let moved = EthernetAddress([0x02, 0, 0, 0, 0, 0x11]);
    // RFC 826: "If the pair <protocol type, sender protocol address> is
    // already in my translation table, update the sender hardware address".
    let out = h.feed(arp_bytes(
        [0xff; 6], moved.0, 1, moved.0, PEER_IP, [0; 6], OTHER_IP,
    ));
    assert!(out.is_empty());
    assert_eq!(h.stack.iface.neighbor(PEER_IP, h.now), Some(moved));
}

/// The destination MAC of every TCP frame in `out`, in order.
fn tcp_dst_macs(out: &[(Instant, Vec<u8>)]) -> Vec<EthernetAddress> {
    out.iter()
        .filter_map(|(_, f)| parse_tcp(f).map(|(eth, _, _)| eth.dst_addr))
        .collect()
}

#[test]
fn a_new_mac_learnt_for_the_peer_is_used_by_the_very_next_segment() {
    // The transmit path keeps the last next hop's entry: learning a new
    // MAC must replace it, not leave segments going to the old one.
    let mut h = Host::knowing_peer();
    h.connect(PEER_IP, 80);
    let first = h.run_until(Instant::ZERO);
    assert_eq!(tcp_dst_macs(&first), vec![PEER_MAC], "the SYN");
    let moved = EthernetAddress([0x02, 0, 0, 0, 0, 0x11]);
    let out = h.feed(arp_bytes(
        [0xff; 6], moved.0, 1, moved.0, PEER_IP, [0; 6], OUR_IP,
    ));
    assert_eq!(out.len(), 1, "the ARP reply");
    let eth = EthernetFrame::new_unchecked(&out[0][..]);
    assert_eq!(eth.dst_addr(), moved, "the ARP reply goes to the new MAC");
    // The SYN's retransmission (RTO 1 s) goes to the new MAC.
    let again = h.run_until(Instant::from_millis(1500));
    assert_eq!(tcp_dst_macs(&again), vec![moved]);
}

#[test]
fn an_expired_neighbour_is_asked_for_again_even_after_it_carried_segments() {
    let mut h = Host::new();
    h.stack
        .iface
        .add_neighbor(PEER_IP, PEER_MAC, Instant::from_millis(2000));
    h.connect(PEER_IP, 80);
    // The SYN at 0 and its retransmission at 1 s go to the known MAC.
    let out = h.run_until(Instant::from_millis(1500));
    assert_eq!(tcp_dst_macs(&out), vec![PEER_MAC, PEER_MAC]);
    // The next one (3 s) finds the entry expired: an ARP request instead.
    let out = h.run_until(Instant::from_millis(3500));
    assert!(tcp_dst_macs(&out).is_empty(), "no segment to a stale MAC");
    let request = arp_bytes([0xff; 6], OUR_MAC.0, 1, OUR_MAC.0, OUR_IP, [0; 6], PEER_IP);
    assert_eq!(
        out.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(),
        vec![request]
    );
}

#[test]
fn segment_to_unknown_neighbour_sends_one_broadcast_arp_request_and_waits_for_the_reply() {
    let mut h = Host::new();
    h.connect(PEER_IP, 80);
    let out = h.poll();
    let request = arp_bytes([0xff; 6], OUR_MAC.0, 1, OUR_MAC.0, OUR_IP, [0; 6], PEER_IP);
    assert_eq!(out, vec![request], "exactly one request, broadcast");
    // Nothing more while we wait (less than one retry period).
    h.now = Instant::from_millis(400);
    assert!(h.poll().is_empty());
    h.now = Instant::from_millis(900);
    assert!(h.poll().is_empty());
    // The reply releases the waiting SYN, now addressed to the peer's MAC.
    let reply = arp_bytes(
        OUR_MAC.0, PEER_MAC.0, 2, PEER_MAC.0, PEER_IP, OUR_MAC.0, OUR_IP,
    );
    let out = h.feed(reply);
    assert_eq!(out.len(), 1, "{out:02x?}");
    let (eth, ip, tcp) = parse_tcp(&out[0]).expect("the waiting SYN");
    assert_eq!((eth.dst_addr, eth.src_addr), (PEER_MAC, OUR_MAC));
    assert_eq!((ip.src_addr, ip.dst_addr), (OUR_IP, PEER_IP));
    assert_eq!(tcp.flags, TcpFlags::SYN);
    assert_eq!(tcp.dst_port, 80);
    let c = h.stack.iface.counters();
    assert_eq!(c.arp_requests_sent, 1);
    assert_eq!(c.arp_pending_dropped, 0);
    assert_eq!(h.stack.iface.neighbor(PEER_IP, h.now), Some(PEER_MAC));
}

#[test]
fn arp_request_repeats_every_retry_period_and_the_waiting_frame_is_dropped_after_three() {
    let mut config = StackConfig::new(OUR_MAC, OUR_IP, 24);
    // Keep TCP from retransmitting its SYN inside the window of interest.
    config.endpoint.tcp.initial_rto = Duration::from_secs(100);
    let mut h = Host::with(config);
    h.connect(PEER_IP, 80);
    let out = h.run_until(Instant::from_secs(10));
    let request = arp_bytes([0xff; 6], OUR_MAC.0, 1, OUR_MAC.0, OUR_IP, [0; 6], PEER_IP);
    let times: Vec<u64> = out
        .iter()
        .map(|(t, f)| {
            assert_eq!(f, &request);
            t.total_millis()
        })
        .collect();
    assert_eq!(times, [0, 1000, 2000], "one request per arp_retry");
    let c = h.stack.iface.counters();
    assert_eq!(c.arp_requests_sent, 3);
    assert_eq!(c.arp_pending_dropped, 1, "gave up after 3 retry periods");
    assert_eq!(h.stack.iface.poll_at(), None, "nothing left waiting");
}

#[test]
fn arp_pending_queue_is_bounded_and_overflow_is_counted() {
    let mut config = StackConfig::new(OUR_MAC, OUR_IP, 24);
    config.iface.arp_pending_max = 4;
    let mut h = Host::with(config);
    for port in 80..86 {
        h.connect(PEER_IP, port);
    }
    let out = h.poll();
    assert_eq!(out.len(), 1, "one request for one address");
    assert_eq!(h.stack.iface.counters().arp_pending_dropped, 2);
    let reply = arp_bytes(
        OUR_MAC.0, PEER_MAC.0, 2, PEER_MAC.0, PEER_IP, OUR_MAC.0, OUR_IP,
    );
    let out = h.feed(reply);
    let ports: Vec<u16> = out
        .iter()
        .map(|f| {
            let (eth, _, tcp) = parse_tcp(f).expect("a SYN");
            assert_eq!(eth.dst_addr, PEER_MAC);
            assert_eq!(tcp.flags, TcpFlags::SYN);
            tcp.dst_port
        })
        .collect();
    assert_eq!(ports, [80, 81, 82, 83], "the first four waited");
}

#[test]
fn arp_with_a_multicast_sender_hardware_address_is_counted_as_bad_source() {
    let mut h = Host::new();
    let out = h.feed(arp_bytes(
        [0xff; 6],
        PEER_MAC.0,
        1,
        [0x01, 0, 0x5e, 0, 0, 1],
        PEER_IP,
        [0; 6],
        OUR_IP,
    ));
    assert!(out.is_empty());
    assert_eq!(h.stack.iface.counters().bad_source, 1);
    assert_eq!(h.stack.iface.neighbor(PEER_IP, h.now), None);
}

// ----- ICMP -----------------------------------------------------------------

fn echo_request(dst_ip: Ipv4Addr, data: &[u8]) -> Vec<u8> {
    icmp_frame(
        PEER_MAC,
        OUR_MAC,
        PEER_IP,
        dst_ip,
        &Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 7,
            data,
        },
    )
}

#[test]
fn icmp_echo_request_gets_a_reply_with_identical_ident_seq_data_and_valid_checksums() {
    let mut h = Host::knowing_peer();
    let data: Vec<u8> = (0..56u8).collect();
    let out = h.feed(echo_request(OUR_IP, &data));
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(&f[0..6], &PEER_MAC.0);
    assert_eq!(&f[6..12], &OUR_MAC.0);
    assert_eq!(&f[12..14], &[0x08, 0x00]);
    let ip = &f[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, 20 + 8 + 56);
    assert_eq!(ip[9], 1, "ICMP");
    assert_eq!(&ip[12..16], &OUR_IP.octets());
    assert_eq!(&ip[16..20], &PEER_IP.octets());
    assert_eq!(internet_checksum(&[ip]), 0, "IPv4 header checksum");
    let icmp = &f[34..];
    assert_eq!(icmp.len(), 8 + 56);
    assert_eq!((icmp[0], icmp[1]), (0, 0), "echo reply, code 0");
    assert_eq!(&icmp[4..6], &0x1234u16.to_be_bytes());
    assert_eq!(&icmp[6..8], &7u16.to_be_bytes());
    assert_eq!(&icmp[8..], &data[..]);
    assert_eq!(internet_checksum(&[icmp]), 0, "ICMP checksum");
    assert_eq!(h.stack.iface.counters().icmp_echo_replies, 1);
}

#[test]
fn icmp_echo_request_with_odd_length_data_gets_a_valid_checksum() {
    let mut h = Host::knowing_peer();
    let out = h.feed(echo_request(OUR_IP, b"odd"));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][42..], b"odd");
    assert_eq!(internet_checksum(&[&out[0][34..]]), 0);
}

#[test]
fn icmp_echo_request_to_another_ip_is_ignored_and_counted() {
    let mut h = Host::knowing_peer();
    let out = h.feed(echo_request(OTHER_IP, b"ping"));
    assert!(out.is_empty());
    let c = h.stack.iface.counters();
    assert_eq!(c.not_for_us, 1);
    assert_eq!(c.icmp_echo_replies, 0);
}

#[test]
fn icmp_with_a_bad_checksum_is_dropped_and_counted() {
    let mut f = echo_request(OUR_IP, b"ping");
    f[34 + 2] ^= 0xff;
    assert_dropped_as(f, wire::Error::BadChecksum);
}

// ----- filtering and malformed frames ---------------------------------------

#[test]
fn frame_for_another_mac_is_counted_as_not_for_us_and_reaches_no_socket() {
    let mut h = Host::knowing_peer();
    listen(&mut h, 80);
    let mut f = syn_to(80);
    f[0..6].copy_from_slice(&OTHER_MAC.0);
    assert!(h.feed(f).is_empty());
    assert_eq!(h.stack.iface.counters().not_for_us, 1);
    assert_eq!(h.stack.tcp.counters().segments_in, 0);
    assert_eq!(h.stack.tcp.state_counts()[State::SynReceived as usize], 0);
    // The same SYN to our MAC is answered.
    let out = h.feed(syn_to(80));
    let (_, _, tcp) = parse_tcp(&out[0]).expect("SYN-ACK");
    assert_eq!(tcp.flags, TcpFlags::SYN | TcpFlags::ACK);
}

#[test]
fn ip_packet_for_another_address_is_counted_as_not_for_us() {
    let mut h = Host::knowing_peer();
    listen(&mut h, 80);
    let f = tcp_frame(
        PEER_MAC,
        OUR_MAC,
        PEER_IP,
        OTHER_IP,
        &segment(40000, 80, 1000, 0, TcpFlags::SYN),
    );
    assert!(h.feed(f).is_empty());
    assert_eq!(h.stack.iface.counters().not_for_us, 1);
    assert_eq!(h.stack.tcp.counters().segments_in, 0);
}

fn set_ip_flags(frame: &mut [u8], flags_and_offset: u16) {
    frame[14 + 6..14 + 8].copy_from_slice(&flags_and_offset.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
}

#[test]
fn ipv4_first_fragment_with_more_fragments_set_is_dropped_as_fragmented() {
    let mut f = syn_to(80);
    set_ip_flags(&mut f, 0x2000);
    assert_dropped_as(f, wire::Error::Fragmented);
}

#[test]
fn ipv4_later_fragment_with_nonzero_offset_is_dropped_as_fragmented() {
    let mut f = syn_to(80);
    set_ip_flags(&mut f, 0x0010);
    assert_dropped_as(f, wire::Error::Fragmented);
}

#[test]
fn ipv4_unfragmented_packet_without_df_is_accepted() {
    let mut h = Host::knowing_peer();
    listen(&mut h, 80);
    let mut f = syn_to(80);
    set_ip_flags(&mut f, 0);
    let out = h.feed(f);
    assert_eq!(out.len(), 1, "SYN-ACK");
    assert_eq!(h.stack.iface.counters().drops_total(), 0);
}

#[test]
fn tcp_segment_with_a_bad_checksum_is_dropped_and_counted() {
    let mut f = syn_to(81);
    let last = f.len() - 1;
    f[last] ^= 0x01; // the urgent pointer's low byte: only the checksum notices
    assert_dropped_as(f, wire::Error::BadChecksum);
}

#[test]
fn ipv4_header_with_a_bad_checksum_is_dropped_and_counted() {
    let mut f = syn_to(80);
    f[14 + 8] = 1; // TTL changed, checksum not refilled
    assert_dropped_as(f, wire::Error::BadChecksum);
}

#[test]
fn truncated_ethernet_header_is_dropped_as_truncated() {
    assert_dropped_as(syn_to(80)[..13].to_vec(), wire::Error::Truncated);
}

#[test]
fn truncated_ipv4_header_is_dropped_as_truncated() {
    assert_dropped_as(syn_to(80)[..14 + 19].to_vec(), wire::Error::Truncated);
}

#[test]
fn truncated_tcp_header_is_dropped_as_truncated() {
    // A consistent IPv4 packet whose payload is 19 bytes of TCP header.
    let seg = tcp_header(5)[..19].to_vec();
    let f = ipv4_frame(
        PEER_MAC,
        OUR_MAC,
        PEER_IP,
        OUR_IP,
        IpProtocol::Tcp,
        |buf| buf.copy_from_slice(&seg),
        seg.len(),
    );
    assert_dropped_as(f, wire::Error::Truncated);
}

#[test]
fn truncated_arp_packet_is_dropped_as_truncated() {
    assert_dropped_as(who_has(OUR_IP)[..14 + 27].to_vec(), wire::Error::Truncated);
}

#[test]
fn tcp_data_offset_below_five_words_is_dropped_as_bad_data_offset() {
    assert_dropped_as(raw_tcp(tcp_header(4)), wire::Error::BadDataOffset);
}

#[test]
fn tcp_data_offset_past_the_segment_is_dropped_as_bad_data_offset() {
    let mut seg = tcp_header(15);
    seg.extend_from_slice(&[1, 1, 1, 1]); // 24 bytes, the header claims 60
    assert_dropped_as(raw_tcp(seg), wire::Error::BadDataOffset);
}

#[test]
fn tcp_option_of_length_zero_is_dropped_as_bad_option_length() {
    let mut seg = tcp_header(6);
    seg.extend_from_slice(&[0x1e, 0, 1, 1]); // unknown kind 30, length 0
    assert_dropped_as(raw_tcp(seg), wire::Error::BadOptionLength);
}

#[test]
fn tcp_option_of_length_one_is_dropped_as_bad_option_length() {
    let mut seg = tcp_header(6);
    seg.extend_from_slice(&[0x02, 1, 1, 1]); // MSS, length 1
    assert_dropped_as(raw_tcp(seg), wire::Error::BadOptionLength);
}

#[test]
fn tcp_option_running_past_the_header_is_dropped_as_bad_option_length() {
    let mut seg = tcp_header(6);
    seg.extend_from_slice(&[0x1e, 8, 0, 0]); // claims 8 bytes, 4 remain
    assert_dropped_as(raw_tcp(seg), wire::Error::BadOptionLength);
}

#[test]
fn tcp_port_zero_is_dropped_as_malformed() {
    let mut seg = tcp_header(5);
    seg[0..2].copy_from_slice(&[0, 0]);
    assert_dropped_as(raw_tcp(seg), wire::Error::Malformed);
}

#[test]
fn ipv4_total_length_larger_than_the_frame_is_dropped_as_bad_ip_length() {
    let mut f = syn_to(80);
    let len = (f.len() - 14 + 1) as u16;
    f[16..18].copy_from_slice(&len.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    assert_dropped_as(f, wire::Error::BadIpLength);
}

#[test]
fn ipv4_total_length_below_the_minimum_header_is_dropped_as_bad_ip_length() {
    let mut f = syn_to(80);
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_dropped_as(f, wire::Error::BadIpLength);
}

#[test]
fn ipv4_header_length_below_five_words_is_dropped_as_bad_ip_header_length() {
    let mut f = syn_to(80);
    f[14] = 0x44;
    assert_dropped_as(f, wire::Error::BadIpHeaderLength);
}

#[test]
fn ip_version_other_than_four_is_dropped_as_bad_version() {
    let mut f = syn_to(80);
    f[14] = 0x65;
    assert_dropped_as(f, wire::Error::BadVersion);
}

#[test]
fn ethernet_padding_after_the_ip_total_length_is_ignored() {
    let mut h = Host::knowing_peer();
    listen(&mut h, 80);
    let mut f = syn_to(80);
    f.extend_from_slice(&[0xee; 6]); // padding to a minimum-size frame
    let out = h.feed(f);
    assert_eq!(out.len(), 1, "SYN-ACK");
    assert_eq!(h.stack.iface.counters().drops_total(), 0);
}

#[test]
fn unknown_ethertype_and_ip_protocol_are_counted_as_unsupported() {
    let mut h = Host::knowing_peer();
    let mut f = syn_to(80);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    assert!(h.feed(f).is_empty());
    let udp = ipv4_frame(
        PEER_MAC,
        OUR_MAC,
        PEER_IP,
        OUR_IP,
        IpProtocol::Udp,
        |b| b.fill(0),
        8,
    );
    assert!(h.feed(udp).is_empty());
    let c = h.stack.iface.counters();
    assert_eq!(c.unsupported, 2);
    assert_eq!(c.drops_total(), 0);
}

fn assert_bad_source(src: Ipv4Addr) {
    let mut h = Host::knowing_peer();
    listen(&mut h, 80);
    let f = tcp_frame(
        PEER_MAC,
        OUR_MAC,
        src,
        OUR_IP,
        &segment(40000, 80, 1000, 0, TcpFlags::SYN),
    );
    assert!(h.feed(f).is_empty(), "answered a SYN from {src}");
    assert_eq!(h.stack.iface.counters().bad_source, 1, "{src}");
    assert_eq!(h.stack.tcp.counters().segments_in, 0, "{src}");
}

#[test]
fn limited_broadcast_source_address_is_counted_as_bad_source() {
    assert_bad_source(Ipv4Addr::BROADCAST);
}

#[test]
fn subnet_broadcast_source_address_is_counted_as_bad_source() {
    assert_bad_source(Ipv4Addr::new(10, 77, 0, 255));
}

#[test]
fn multicast_source_address_is_counted_as_bad_source() {
    assert_bad_source(Ipv4Addr::new(224, 0, 0, 1));
}

#[test]
fn our_own_source_address_is_counted_as_bad_source() {
    assert_bad_source(OUR_IP);
}

#[test]
fn unspecified_source_address_is_counted_as_bad_source() {
    assert_bad_source(Ipv4Addr::UNSPECIFIED);
}

// ----- segments that reach no socket (RFC 9293 §3.10.7.1) -------------------

#[test]
fn syn_to_a_closed_port_gets_rst_ack_with_seq_zero_and_ack_seq_plus_len() {
    let mut h = Host::knowing_peer();
    let mut syn = segment(40000, 81, 1000, 0, TcpFlags::SYN);
    syn.payload = b"hello"; // SEG.LEN = 1 (SYN) + 5
    let out = h.feed(tcp_frame(PEER_MAC, OUR_MAC, PEER_IP, OUR_IP, &syn));
    assert_eq!(out.len(), 1);
    let f = &out[0];
    // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, no options, window 0.
    let mut rst = segment(81, 40000, 0, 1006, TcpFlags::RST | TcpFlags::ACK);
    rst.window_len = 0;
    assert_eq!(f, &tcp_frame(OUR_MAC, PEER_MAC, OUR_IP, PEER_IP, &rst));
    let tcp = &f[34..];
    assert_eq!(tcp.len(), 20);
    assert_eq!(&tcp[4..8], &0u32.to_be_bytes());
    assert_eq!(&tcp[8..12], &1006u32.to_be_bytes());
    assert_eq!(tcp[13], 0x14, "RST|ACK");
    assert_eq!(
        internet_checksum(&[&pseudo_header(OUR_IP, PEER_IP, 6, 20), tcp]),
        0
    );
    assert_eq!(internet_checksum(&[&f[14..34]]), 0);
    let c = h.stack.tcp.counters();
    assert_eq!((c.no_socket, c.rst_sent), (1, 1));
}

#[test]
fn ack_to_a_closed_port_gets_rst_with_seq_equal_to_its_ack_number() {
    let mut h = Host::knowing_peer();
    let mut seg = segment(40000, 81, 1000, 0xdead_beef, TcpFlags::ACK);
    seg.payload = b"data";
    let out = h.feed(tcp_frame(PEER_MAC, OUR_MAC, PEER_IP, OUR_IP, &seg));
    // <SEQ=SEG.ACK><CTL=RST>
    let mut rst = segment(81, 40000, 0xdead_beef, 0, TcpFlags::RST);
    rst.window_len = 0;
    assert_eq!(
        out,
        vec![tcp_frame(OUR_MAC, PEER_MAC, OUR_IP, PEER_IP, &rst)]
    );
    assert_eq!(&out[0][34 + 8..34 + 12], &[0, 0, 0, 0], "no ACK field");
}

#[test]
fn rst_to_a_closed_port_gets_no_reply() {
    let mut h = Host::knowing_peer();
    let seg = segment(40000, 81, 1000, 0, TcpFlags::RST);
    assert!(h
        .feed(tcp_frame(PEER_MAC, OUR_MAC, PEER_IP, OUR_IP, &seg))
        .is_empty());
    assert_eq!(h.stack.tcp.counters().no_socket, 1);
    assert_eq!(h.stack.tcp.counters().rst_sent, 0);
}

#[test]
fn rst_to_an_unknown_neighbour_waits_for_arp_like_any_segment() {
    let mut h = Host::new();
    let out = h.feed(syn_to(81));
    assert_eq!(out.len(), 1);
    let (op, tpa) =
        match ArpRepr::parse(&flowlane::wire::ArpPacket::new_checked(&out[0][14..]).unwrap())
            .unwrap()
        {
            ArpRepr::EthernetIpv4 {
                operation,
                target_protocol_addr,
                ..
            } => (operation, target_protocol_addr),
        };
    assert_eq!((op, tpa), (ArpOperation::Request, PEER_IP));
    let reply = arp_frame(
        PEER_MAC,
        OUR_MAC,
        &ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: PEER_MAC,
            source_protocol_addr: PEER_IP,
            target_hardware_addr: OUR_MAC,
            target_protocol_addr: OUR_IP,
        },
    );
    let out = h.feed(reply);
    let (eth, _, tcp) = parse_tcp(&out[0]).expect("the RST");
    assert_eq!(eth.dst_addr, PEER_MAC);
    assert_eq!(tcp.flags, TcpFlags::RST | TcpFlags::ACK);
}

#[test]
fn tcp_segment_in_a_link_layer_broadcast_frame_is_discarded() {
    let mut h = Host::knowing_peer();
    listen(&mut h, 80);
    let mut f = syn_to(80);
    f[0..6].copy_from_slice(&[0xff; 6]);
    let out = h.feed(f);
    assert!(out.is_empty(), "answered a broadcast SYN: {out:02x?}");
    assert_eq!(h.stack.tcp.counters().segments_in, 0);
}

/// On a sharded stack every core keeps its own ARP cache, and an ARP reply
/// lands on whichever queue the NIC picks: the receiving core answers and
/// forwards a copy to each other core, which learns from it without
/// answering again (and without forwarding it on).
#[test]
fn arp_frames_are_shared_with_the_other_cores() {
    use flowlane::shard::rss::{Rss, MICROSOFT_KEY};
    let mut core0 = Host::new();
    let mut core1 = Host::new();
    core0
        .stack
        .set_steering(Some((Rss::new(MICROSOFT_KEY, 3), 0)));
    core1
        .stack
        .set_steering(Some((Rss::new(MICROSOFT_KEY, 3), 1)));
    let request = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: OUR_IP,
    };
    let frame = arp_frame(PEER_MAC, EthernetAddress::BROADCAST, &request);
    let out = core0.feed(frame.clone());
    assert_eq!(out.len(), 1, "core 0 answers the request");
    let copies: Vec<(usize, Vec<u8>)> = core0.stack.iface.take_misdirected().collect();
    assert_eq!(
        copies.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        [1, 2],
        "a copy for each other core"
    );
    assert!(copies.iter().all(|(_, f)| *f == frame));
    // Core 1 learns the peer from the copy, sends nothing and forwards
    // nothing.
    let now = core1.now;
    core1.stack.inject(now, &copies[0].1);
    assert!(core1.poll().is_empty(), "only the receiving core answers");
    assert_eq!(core1.stack.iface.take_misdirected().count(), 0);
    assert_eq!(core1.stack.iface.neighbor(PEER_IP, now), Some(PEER_MAC));
}
