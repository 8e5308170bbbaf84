//! Packet capture in the classic libpcap file format.
//!
//! Owns: [`PcapWriter`] (global header plus one record per frame),
//! [`PcapReader`] (for tests and tools: either byte order, microsecond or
//! nanosecond timestamps), and [`PcapDevice`], a wrapper that records every
//! frame any [`Device`] receives or transmits, like smoltcp's `PcapWriter`
//! wrapper.
//!
//! Never: reads a clock (record timestamps are the `now` passed to the
//! device), or lets a capture failure disturb the data path: a write error
//! in [`PcapDevice`] is counted and the frames still move.

use std::io::{self, Read, Write};

use super::{Device, DeviceCapabilities, DeviceCounters, FrameBatch};
use crate::time::Instant;

/// Magic of a file with microsecond timestamps, as written in native order.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of a file with nanosecond timestamps.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET: frames start with the Ethernet II header.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest number of bytes stored per frame.
pub const SNAPLEN: u32 = 65535;
/// Largest record the reader accepts, whatever the file's snaplen claims;
/// guards against allocating gigabytes for a corrupt length field.
const MAX_RECORD_LEN: u32 = 256 * 1024;

const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// Writes a libpcap file: little-endian, version 2.4, microsecond
/// timestamps, Ethernet link type, snaplen 65535.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header to `w`.
    pub fn new(mut w: W) -> io::Result<Self> {
        let mut h = [0u8; GLOBAL_HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay zero.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w })
    }

    /// A writer that continues a stream whose global header was already
    /// written (for example by an earlier `PcapWriter` over `&mut file`).
    pub fn append(w: W) -> Self {
        PcapWriter { w }
    }

    /// Writes one record. Frames longer than the snaplen are cut, keeping
    /// their original length in the record header.
    pub fn write_frame(&mut self, ts: Instant, frame: &[u8]) -> io::Result<()> {
        let micros = ts.total_micros();
        // The format's seconds field is 32 bits; it wraps in 2106.
        let sec = (micros / 1_000_000) as u32;
        let usec = (micros % 1_000_000) as u32;
        let incl = frame.len().min(SNAPLEN as usize);
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&sec.to_le_bytes());
        h[4..8].copy_from_slice(&usec.to_le_bytes());
        h[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig.to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(&frame[..incl])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    pub fn get_ref(&self) -> &W {
        &self.w
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// Reads a libpcap file written in either byte order, with microsecond or
/// nanosecond timestamps. Timestamps come back as [`Instant`]s in
/// microseconds since the epoch the file used (nanoseconds are truncated).
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    r: R,
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
    linktype: u32,
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the global header.
    pub fn new(mut r: R) -> io::Result<Self> {
        let mut h = [0u8; GLOBAL_HEADER_LEN];
        r.read_exact(&mut h)?;
        let magic = [h[0], h[1], h[2], h[3]];
        let (big_endian, nanos) = if magic == MAGIC_MICROS.to_le_bytes() {
            (false, false)
        } else if magic == MAGIC_MICROS.to_be_bytes() {
            (true, false)
        } else if magic == MAGIC_NANOS.to_le_bytes() {
            (false, true)
        } else if magic == MAGIC_NANOS.to_be_bytes() {
            (true, true)
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a libpcap file (unknown magic)",
            ));
        };
        let mut reader = PcapReader {
            r,
            big_endian,
            nanos,
            snaplen: 0,
            linktype: 0,
        };
        reader.snaplen = reader.u32_at(&h, 16);
        reader.linktype = reader.u32_at(&h, 20);
        Ok(reader)
    }

    fn u32_at(&self, b: &[u8], at: usize) -> u32 {
        let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    }

    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    pub fn is_nanosecond(&self) -> bool {
        self.nanos
    }

    /// The next record's timestamp and captured bytes; `None` at a clean end
    /// of file, an error for a truncated or implausible record.
    pub fn next_frame(&mut self) -> Option<io::Result<(Instant, Vec<u8>)>> {
        let mut h = [0u8; RECORD_HEADER_LEN];
        match read_full(&mut self.r, &mut h) {
            Ok(0) => return None,
            Ok(RECORD_HEADER_LEN) => {}
            Ok(_) => {
                return Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated pcap record header",
                )))
            }
            Err(e) => return Some(Err(e)),
        }
        let sec = u64::from(self.u32_at(&h, 0));
        let frac = u64::from(self.u32_at(&h, 4));
        let incl = self.u32_at(&h, 8);
        if incl > MAX_RECORD_LEN {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("pcap record length {incl} is implausible"),
            )));
        }
        let mut frame = vec![0u8; incl as usize];
        if let Err(e) = self.r.read_exact(&mut frame) {
            return Some(Err(e));
        }
        let sub_micros = if self.nanos { frac / 1000 } else { frac };
        let ts = Instant::from_micros(sec * 1_000_000 + sub_micros);
        Some(Ok((ts, frame)))
    }
}

/// Like `read_exact`, but reports how many bytes arrived before end of file
/// instead of failing, so a clean end can be told from a truncated record.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Which directions a [`PcapDevice`] records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PcapMode {
    #[default]
    Both,
    RxOnly,
    TxOnly,
}

/// Wraps any [`Device`] and records every frame it receives and transmits,
/// stamped with the `now` of the call. Capture never disturbs the data path:
/// write errors are counted ([`PcapDevice::write_errors`]), never returned.
///
/// For a device that is re-borrowed every poll (such as
/// [`LinkPort`](super::LinkPort)), keep the file outside and wrap per poll:
/// `PcapDevice::from_writer(link.port(0), PcapWriter::append(&mut file))`.
#[derive(Debug)]
pub struct PcapDevice<D: Device, W: Write> {
    inner: D,
    writer: PcapWriter<W>,
    mode: PcapMode,
    write_errors: u64,
}

impl<D: Device, W: Write> PcapDevice<D, W> {
    /// Wraps `inner`, writing a fresh global header to `w`.
    pub fn new(inner: D, w: W) -> io::Result<Self> {
        Ok(Self::from_writer(inner, PcapWriter::new(w)?))
    }

    /// Wraps `inner`, recording through an existing writer.
    pub fn from_writer(inner: D, writer: PcapWriter<W>) -> Self {
        PcapDevice {
            inner,
            writer,
            mode: PcapMode::Both,
            write_errors: 0,
        }
    }

    pub fn with_mode(mut self, mode: PcapMode) -> Self {
        self.mode = mode;
        self
    }

    /// Records that could not be written.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    pub fn writer_mut(&mut self) -> &mut PcapWriter<W> {
        &mut self.writer
    }

    pub fn into_parts(self) -> (D, PcapWriter<W>) {
        (self.inner, self.writer)
    }

    fn record(writer: &mut PcapWriter<W>, errors: &mut u64, now: Instant, frame: &[u8]) {
        if writer.write_frame(now, frame).is_err() {
            *errors += 1;
        }
    }
}

impl<D: Device, W: Write> Device for PcapDevice<D, W> {
    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }

    fn receive(&mut self, now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let start = batch.len();
        let n = self.inner.receive(now, batch, max);
        if self.mode != PcapMode::TxOnly {
            for i in start..batch.len() {
                Self::record(&mut self.writer, &mut self.write_errors, now, batch.get(i));
            }
        }
        n
    }

    fn transmit(&mut self, now: Instant, batch: &mut FrameBatch) -> usize {
        if self.mode != PcapMode::RxOnly {
            for frame in batch.iter() {
                Self::record(&mut self.writer, &mut self.write_errors, now, frame);
            }
        }
        self.inner.transmit(now, batch)
    }

    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }

    fn counters(&self) -> DeviceCounters {
        self.inner.counters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phy::{Link, LinkConfig};
    use std::io::Cursor;

    fn read_all(bytes: &[u8]) -> Vec<(Instant, Vec<u8>)> {
        let mut r = PcapReader::new(Cursor::new(bytes)).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_frame() {
            out.push(rec.unwrap());
        }
        out
    }

    /// An ARP request "who-has 10.0.0.2 tell 10.0.0.1" (42 bytes).
    fn arp_request() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        f
    }

    #[test]
    fn global_header_is_little_endian_v2_4_microsecond_ethernet() {
        let w = PcapWriter::new(Vec::new()).unwrap();
        let bytes = w.into_inner();
        assert_eq!(
            bytes,
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
    }

    #[test]
    fn written_frames_read_back_with_their_timestamps_and_bytes() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let frames = [
            (Instant::from_micros(0), vec![1u8; 60]),
            (Instant::from_micros(1_234_567), vec![2u8; 1514]),
            (Instant::from_secs(3_000_000), Vec::new()),
        ];
        for (ts, f) in &frames {
            w.write_frame(*ts, f).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(read_all(&w.into_inner()), frames);
    }

    #[test]
    fn frame_longer_than_snaplen_is_cut_but_keeps_original_length() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_frame(Instant::ZERO, &vec![7u8; 70_000]).unwrap();
        let bytes = w.into_inner();
        let orig = u32::from_le_bytes(bytes[24 + 12..24 + 16].try_into().unwrap());
        assert_eq!(orig, 70_000);
        let got = read_all(&bytes);
        assert_eq!(got[0].1.len(), SNAPLEN as usize);
    }

    fn handmade(magic: u32, big_endian: bool, frac: u32) -> Vec<u8> {
        let be = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut b = Vec::new();
        b.extend_from_slice(&be(magic));
        let ver: [u8; 4] = if big_endian {
            [0, 2, 0, 4]
        } else {
            [2, 0, 4, 0]
        };
        b.extend_from_slice(&ver);
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&be(65535));
        b.extend_from_slice(&be(1));
        b.extend_from_slice(&be(5));
        b.extend_from_slice(&be(frac));
        b.extend_from_slice(&be(3));
        b.extend_from_slice(&be(3));
        b.extend_from_slice(&[9, 8, 7]);
        b
    }

    #[test]
    fn reader_accepts_both_byte_orders_and_nanosecond_magic() {
        let cases = [
            (MAGIC_MICROS, false, 250_000, 5_250_000),
            (MAGIC_MICROS, true, 250_000, 5_250_000),
            (MAGIC_NANOS, false, 250_000_999, 5_250_000),
            (MAGIC_NANOS, true, 250_000_999, 5_250_000),
        ];
        for (magic, big, frac, micros) in cases {
            let bytes = handmade(magic, big, frac);
            let mut r = PcapReader::new(Cursor::new(&bytes)).unwrap();
            assert_eq!(r.linktype(), LINKTYPE_ETHERNET);
            assert_eq!(r.snaplen(), 65535);
            assert_eq!(r.is_nanosecond(), magic == MAGIC_NANOS);
            let (ts, f) = r.next_frame().unwrap().unwrap();
            assert_eq!(
                ts,
                Instant::from_micros(micros),
                "magic {magic:x} big {big}"
            );
            assert_eq!(f, [9, 8, 7]);
            assert!(r.next_frame().is_none());
        }
    }

    #[test]
    fn reader_rejects_unknown_magic() {
        let mut bytes = handmade(MAGIC_MICROS, false, 0);
        bytes[0] = 0;
        let err = PcapReader::new(Cursor::new(bytes)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncated_record_is_an_error_and_clean_end_is_none() {
        let full = handmade(MAGIC_MICROS, false, 0);
        for cut in [full.len() - 1, 24 + 5] {
            let mut r = PcapReader::new(Cursor::new(&full[..cut])).unwrap();
            let err = r.next_frame().unwrap().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        let mut r = PcapReader::new(Cursor::new(&full[..24])).unwrap();
        assert!(r.next_frame().is_none());
    }

    #[test]
    fn implausible_record_length_is_rejected_without_allocating_it() {
        let mut bytes = handmade(MAGIC_MICROS, false, 0);
        bytes[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = PcapReader::new(Cursor::new(bytes)).unwrap();
        let err = r.next_frame().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn pcap_device_records_received_and_transmitted_frames_with_now() {
        let mut link = Link::new(LinkConfig::default(), 1);
        let mut file = Vec::new();
        PcapWriter::new(&mut file).unwrap();
        let mut batch = FrameBatch::new();

        batch.push_copy(b"from port 0, sent at 1 ms");
        let mut dev = PcapDevice::from_writer(link.port(0), PcapWriter::append(&mut file));
        assert_eq!(dev.transmit(Instant::from_millis(1), &mut batch), 1);
        assert_eq!(dev.write_errors(), 0);

        // Port 1 is not recorded; port 0 records what it receives.
        batch.push_copy(b"from port 1");
        link.port(1).transmit(Instant::from_millis(2), &mut batch);
        let mut dev = PcapDevice::from_writer(link.port(0), PcapWriter::append(&mut file));
        assert_eq!(dev.receive(Instant::from_millis(3), &mut batch, 8), 1);

        assert_eq!(
            read_all(&file),
            vec![
                (
                    Instant::from_millis(1),
                    b"from port 0, sent at 1 ms".to_vec()
                ),
                (Instant::from_millis(3), b"from port 1".to_vec()),
            ]
        );
    }

    #[test]
    fn pcap_device_records_only_the_chosen_direction() {
        let mut link = Link::new(LinkConfig::default(), 1);
        let mut dev = PcapDevice::new(link.port(0), Vec::new())
            .unwrap()
            .with_mode(PcapMode::RxOnly);
        let mut batch = FrameBatch::new();
        batch.push_copy(b"outgoing");
        dev.transmit(Instant::ZERO, &mut batch);
        let (_, w) = dev.into_parts();
        assert!(read_all(&w.into_inner()).is_empty());
        assert_eq!(link.port(1).receive(Instant::ZERO, &mut batch, 8), 1);
    }

    struct FailingWriter;
    impl Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_counted_and_frames_still_move() {
        let mut link = Link::new(LinkConfig::default(), 1);
        let mut dev = PcapDevice::from_writer(link.port(0), PcapWriter::append(FailingWriter));
        let mut batch = FrameBatch::new();
        batch.push_copy(b"one");
        batch.push_copy(b"two");
        assert_eq!(dev.transmit(Instant::ZERO, &mut batch), 2);
        assert_eq!(dev.write_errors(), 2);
        assert_eq!(dev.inner().index(), 0);
        assert_eq!(link.port(1).receive(Instant::ZERO, &mut batch, 8), 2);
    }

    #[test]
    fn tcpdump_accepts_a_written_file() {
        let Ok(path) = which_tcpdump() else {
            println!("skipped: tcpdump is not installed");
            return;
        };
        let file = std::env::temp_dir().join(format!(
            "flowlane-pcap-test-{}-{:?}.pcap",
            std::process::id(),
            std::thread::current().id()
        ));
        {
            let mut w = PcapWriter::new(std::fs::File::create(&file).unwrap()).unwrap();
            w.write_frame(Instant::from_micros(1_500_000), &arp_request())
                .unwrap();
            w.write_frame(Instant::from_micros(2_000_001), &arp_request())
                .unwrap();
            w.flush().unwrap();
        }
        let out = std::process::Command::new(path)
            .args(["-r"])
            .arg(&file)
            .arg("-nn")
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tcpdump failed: {stderr}");
        assert!(stderr.contains("EN10MB"), "link type: {stderr}");
        assert_eq!(stdout.lines().count(), 2, "{stdout}");
        assert!(
            stdout.contains("who-has 10.0.0.2 tell 10.0.0.1"),
            "{stdout}"
        );
    }

    fn which_tcpdump() -> Result<std::path::PathBuf, ()> {
        let out = std::process::Command::new("which")
            .arg("tcpdump")
            .output()
            .map_err(|_| ())?;
        if !out.status.success() {
            return Err(());
        }
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if path.is_empty() {
            Err(())
        } else {
            Ok(path.into())
        }
    }
}
