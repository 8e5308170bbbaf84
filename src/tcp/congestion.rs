//! Congestion control behind one trait: Reno (RFC 5681, with NewReno's
//! recovery in the connection, RFC 6582) and CUBIC (RFC 9438).
//!
//! The controller owns cwnd and ssthresh and decides how they move; the
//! connection owns loss detection and recovery (duplicate ACKs, partial ACKs,
//! SACK scoreboard, RTO) and tells the controller what happened. Windows are
//! in bytes. Nothing here reads a clock: `now` comes in.

use crate::time::{Duration, Instant};

/// Which algorithm (and which loss recovery) a connection uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Algorithm {
    /// RFC 5681 Reno: fast recovery ends at the first new ACK.
    Reno,
    /// Reno's window rules with RFC 6582 NewReno recovery (partial ACKs).
    #[default]
    NewReno,
    /// RFC 9438 CUBIC window growth, NewReno/SACK recovery.
    Cubic,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Reno => "reno",
            Algorithm::NewReno => "newreno",
            Algorithm::Cubic => "cubic",
        }
    }
    pub fn from_name(s: &str) -> Option<Algorithm> {
        match s {
            "reno" => Some(Algorithm::Reno),
            "newreno" => Some(Algorithm::NewReno),
            "cubic" => Some(Algorithm::Cubic),
            _ => None,
        }
    }
}

/// What a congestion controller must answer to.
pub trait CongestionControl {
    /// Congestion window, bytes.
    fn cwnd(&self) -> u32;
    fn ssthresh(&self) -> u32;
    /// New data acknowledged outside recovery: grow (slow start or
    /// congestion avoidance). `rtt` is the current smoothed RTT.
    fn on_ack(&mut self, now: Instant, acked: u32, smss: u32, rtt: Duration);
    /// Loss detected by duplicate ACKs or SACK (entering fast recovery).
    /// Sets ssthresh; returns the cwnd to use during recovery before any
    /// inflation.
    fn on_loss(&mut self, now: Instant, flight_size: u32, smss: u32);
    /// Retransmission timeout: the loss window (RFC 5681 §3.1 eq. 4).
    fn on_rto(&mut self, now: Instant, flight_size: u32, smss: u32);
    /// Sets cwnd directly (recovery inflation and deflation).
    fn set_cwnd(&mut self, cwnd: u32);
}

/// RFC 5681 §3.1: slow start below ssthresh, congestion avoidance at or
/// above it, with appropriate byte counting (RFC 3465, L = 1·SMSS) so that
/// one full round of ACKs adds exactly one SMSS in congestion avoidance.
#[derive(Clone, Debug)]
pub struct Reno {
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acknowledged towards the next congestion-avoidance increment.
    bytes_acked: u32,
}

impl Reno {
    pub fn new(initial_window: u32) -> Reno {
        Reno {
            cwnd: initial_window,
            // RFC 5681 §3.1: "arbitrarily high".
            ssthresh: u32::MAX,
            bytes_acked: 0,
        }
    }
    pub fn with_ssthresh(mut self, ssthresh: u32) -> Reno {
        self.ssthresh = ssthresh;
        self
    }
}

/// RFC 5681 eq. (4): ssthresh = max(FlightSize / 2, 2·SMSS).
fn half_flight(flight_size: u32, smss: u32) -> u32 {
    (flight_size / 2).max(2 * smss)
}

impl CongestionControl for Reno {
    fn cwnd(&self) -> u32 {
        self.cwnd
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, acked: u32, smss: u32, _rtt: Duration) {
        if self.cwnd < self.ssthresh {
            // Slow start: cwnd += min(N, SMSS) per ACK, not past ssthresh;
            // the seed notes' trace stops at ssthresh (8 -> 12 -> 13).
            let inc = acked.min(smss);
            self.cwnd = self.cwnd.saturating_add(inc).min(self.ssthresh);
            self.bytes_acked = 0;
        } else {
            self.bytes_acked = self.bytes_acked.saturating_add(acked);
            if self.bytes_acked >= self.cwnd {
                self.bytes_acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(smss);
            }
        }
    }
    fn on_loss(&mut self, _now: Instant, flight_size: u32, smss: u32) {
        self.ssthresh = half_flight(flight_size, smss);
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
    }
    fn on_rto(&mut self, _now: Instant, flight_size: u32, smss: u32) {
        self.ssthresh = half_flight(flight_size, smss);
        self.cwnd = smss;
        self.bytes_acked = 0;
    }
    fn set_cwnd(&mut self, cwnd: u32) {
        self.cwnd = cwnd;
    }
}

/// RFC 9438 CUBIC.
#[derive(Clone, Debug)]
pub struct Cubic {
    cwnd: u32,
    ssthresh: u32,
    /// W_max in segments (window before the last reduction).
    w_max: f64,
    /// W_last_max for fast convergence (§4.7).
    w_last_max: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Option<Instant>,
    /// K in seconds (§4.2, eq. 2).
    k: f64,
    /// Reno-friendly estimate W_est in segments (§4.3).
    w_est: f64,
    /// cwnd at the epoch start, in segments.
    cwnd_epoch: f64,
    bytes_acked: u32,
}

/// RFC 9438 §4.1: C = 0.4, β_cubic = 0.7.
const CUBIC_C: f64 = 0.4;
const CUBIC_BETA: f64 = 0.7;

impl Cubic {
    pub fn new(initial_window: u32) -> Cubic {
        Cubic {
            cwnd: initial_window,
            ssthresh: u32::MAX,
            w_max: 0.0,
            w_last_max: 0.0,
            epoch_start: None,
            k: 0.0,
            w_est: 0.0,
            cwnd_epoch: 0.0,
            bytes_acked: 0,
        }
    }

    fn reduce(&mut self, smss: u32) {
        let cwnd_seg = self.cwnd as f64 / smss as f64;
        // §4.7 fast convergence.
        if cwnd_seg < self.w_last_max {
            self.w_last_max = cwnd_seg;
            self.w_max = cwnd_seg * (1.0 + CUBIC_BETA) / 2.0;
        } else {
            self.w_last_max = cwnd_seg;
            self.w_max = cwnd_seg;
        }
        // §4.6: ssthresh = cwnd · β, at least 2 segments.
        self.ssthresh = ((self.cwnd as f64 * CUBIC_BETA) as u32).max(2 * smss);
        self.epoch_start = None;
        self.bytes_acked = 0;
    }
}

impl CongestionControl for Cubic {
    fn cwnd(&self) -> u32 {
        self.cwnd
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn on_ack(&mut self, now: Instant, acked: u32, smss: u32, rtt: Duration) {
        if self.cwnd < self.ssthresh {
            let inc = acked.min(smss);
            self.cwnd = self.cwnd.saturating_add(inc).min(self.ssthresh);
            return;
        }
        let smss_f = smss as f64;
        let cwnd_seg = self.cwnd as f64 / smss_f;
        let start = match self.epoch_start {
            Some(t) => t,
            None => {
                // §4.2: a new epoch; K from W_max (or 0 if we are above it).
                self.epoch_start = Some(now);
                self.cwnd_epoch = cwnd_seg;
                self.w_est = cwnd_seg;
                self.k = if self.w_max > cwnd_seg {
                    ((self.w_max - cwnd_seg) / CUBIC_C).cbrt()
                } else {
                    0.0
                };
                if self.w_max < cwnd_seg {
                    self.w_max = cwnd_seg;
                }
                now
            }
        };
        let t = (now - start).total_micros() as f64 / 1e6;
        let rtt_s = (rtt.total_micros() as f64 / 1e6).max(1e-6);
        // §4.2 eq. 1, evaluated one RTT ahead as the target.
        let dt = t + rtt_s - self.k;
        let w_cubic = CUBIC_C * dt * dt * dt + self.w_max;
        // §4.3: the Reno-friendly region, α = 3(1-β)/(1+β).
        let alpha = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
        self.w_est += alpha * (acked as f64 / smss_f) / cwnd_seg;
        let target = if w_cubic < self.w_est {
            self.w_est
        } else {
            // §4.4/§4.5: at most 1.5x per RTT.
            w_cubic.clamp(cwnd_seg, 1.5 * cwnd_seg)
        };
        // Grow by (target - cwnd)/cwnd segments per acked segment.
        let inc_seg = ((target - cwnd_seg) / cwnd_seg) * (acked as f64 / smss_f);
        let inc_bytes = (inc_seg.max(0.0) * smss_f) as u32;
        self.bytes_acked = self.bytes_acked.saturating_add(inc_bytes);
        if self.bytes_acked >= 1 {
            self.cwnd = self.cwnd.saturating_add(self.bytes_acked);
            self.bytes_acked = 0;
        }
    }
    fn on_loss(&mut self, _now: Instant, _flight_size: u32, smss: u32) {
        self.reduce(smss);
        self.cwnd = self.ssthresh;
    }
    fn on_rto(&mut self, _now: Instant, _flight_size: u32, smss: u32) {
        self.reduce(smss);
        self.cwnd = smss;
    }
    fn set_cwnd(&mut self, cwnd: u32) {
        self.cwnd = cwnd;
    }
}

/// The per-connection controller (enum dispatch: no allocation, no vtable
/// on the per-ACK path).
#[derive(Clone, Debug)]
pub enum Controller {
    Reno(Reno),
    Cubic(Cubic),
}

impl Controller {
    pub fn new(algorithm: Algorithm, initial_window: u32) -> Controller {
        match algorithm {
            Algorithm::Reno | Algorithm::NewReno => Controller::Reno(Reno::new(initial_window)),
            Algorithm::Cubic => Controller::Cubic(Cubic::new(initial_window)),
        }
    }
    fn inner(&self) -> &dyn CongestionControl {
        match self {
            Controller::Reno(r) => r,
            Controller::Cubic(c) => c,
        }
    }
    fn inner_mut(&mut self) -> &mut dyn CongestionControl {
        match self {
            Controller::Reno(r) => r,
            Controller::Cubic(c) => c,
        }
    }
}

impl CongestionControl for Controller {
    fn cwnd(&self) -> u32 {
        self.inner().cwnd()
    }
    fn ssthresh(&self) -> u32 {
        self.inner().ssthresh()
    }
    fn on_ack(&mut self, now: Instant, acked: u32, smss: u32, rtt: Duration) {
        self.inner_mut().on_ack(now, acked, smss, rtt)
    }
    fn on_loss(&mut self, now: Instant, flight_size: u32, smss: u32) {
        self.inner_mut().on_loss(now, flight_size, smss)
    }
    fn on_rto(&mut self, now: Instant, flight_size: u32, smss: u32) {
        self.inner_mut().on_rto(now, flight_size, smss)
    }
    fn set_cwnd(&mut self, cwnd: u32) {
        self.inner_mut().set_cwnd(cwnd)
    }
}

/// RFC 6928: IW = min(10·MSS, max(2·MSS, 14600)).
pub fn initial_window(smss: u32, segments: Option<u32>) -> u32 {
    match segments {
        Some(n) => n.max(1) * smss,
        None => (10 * smss).min((2 * smss).max(14600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMSS: u32 = 1000;

    /// One round: cwnd segments sent, each acknowledged by its own ACK.
    fn round(cc: &mut impl CongestionControl) {
        let segments = cc.cwnd() / SMSS;
        for _ in 0..segments {
            cc.on_ack(Instant::ZERO, SMSS, SMSS, Duration::from_millis(10));
        }
    }

    #[test]
    fn seed_notes_slow_start_and_avoidance_trace_in_segments() {
        // Initial window 1, ssthresh 16, timeout at 24 (the seed notes'
        // figure).
        let mut cc = Reno::new(SMSS).with_ssthresh(16 * SMSS);
        let mut trace = vec![cc.cwnd() / SMSS];
        while cc.cwnd() < 24 * SMSS {
            round(&mut cc);
            trace.push(cc.cwnd() / SMSS);
        }
        assert_eq!(trace, [1, 2, 4, 8, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
        cc.on_rto(Instant::ZERO, 24 * SMSS, SMSS);
        assert_eq!(cc.ssthresh(), 12 * SMSS);
        assert_eq!(cc.cwnd(), SMSS);
        let mut trace = vec![1];
        for _ in 0..7 {
            round(&mut cc);
            trace.push(cc.cwnd() / SMSS);
        }
        assert_eq!(trace, [1, 2, 4, 8, 12, 13, 14, 15]);
    }

    #[test]
    fn loss_halves_flight_but_never_below_two_segments() {
        let mut cc = Reno::new(10 * SMSS);
        cc.on_loss(Instant::ZERO, 3 * SMSS, SMSS);
        assert_eq!(cc.ssthresh(), 2 * SMSS);
        cc.on_loss(Instant::ZERO, 30 * SMSS, SMSS);
        assert_eq!(cc.ssthresh(), 15 * SMSS);
        assert_eq!(cc.cwnd(), 15 * SMSS);
    }

    #[test]
    fn initial_window_follows_rfc_6928() {
        assert_eq!(initial_window(1460, None), 14600);
        assert_eq!(initial_window(536, None), 5360);
        assert_eq!(initial_window(9000, None), 18000);
        assert_eq!(initial_window(1000, Some(1)), 1000);
    }

    #[test]
    fn cubic_reduces_by_beta_and_regrows_towards_w_max() {
        let mut cc = Cubic::new(100 * SMSS);
        cc.ssthresh = 50 * SMSS;
        cc.on_loss(Instant::ZERO, 100 * SMSS, SMSS);
        assert_eq!(cc.cwnd(), 70 * SMSS);
        assert_eq!(cc.ssthresh(), 70 * SMSS);
        // K = cbrt(100 * 0.3 / 0.4) = 4.22 s: at t = K cwnd is back near W_max.
        let rtt = Duration::from_millis(100);
        let mut now = Instant::ZERO;
        let mut at_k = 0;
        for step in 0..100 {
            now = Instant::from_millis(step * 100);
            let segs = cc.cwnd() / SMSS;
            for _ in 0..segs {
                cc.on_ack(now, SMSS, SMSS, rtt);
            }
            if step == 42 {
                at_k = cc.cwnd() / SMSS;
            }
        }
        assert!((95..=106).contains(&at_k), "cwnd at K: {at_k}");
        assert!(cc.cwnd() / SMSS > 110, "convex growth past W_max");
        let _ = now;
    }
}
