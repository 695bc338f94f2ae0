//! The jitter buffer in front of playout: packets of one stream, one 20 ms frame
//! each, put back in order and handed out one per playout tick.
//!
//! Playout starts once `depth` frames are held (priming), then moves one sequence
//! number per tick whether or not its packet came: a missing one is [`Playout::Lost`],
//! carrying the packet after it when that one is here (for Opus in-band FEC). Packets
//! for frames already played are late and dropped. When more than `depth` plus
//! [`SLACK`] frames pile up (a burst, or a sender whose clock runs fast), the oldest are
//! dropped down to `depth` so that latency stays bounded; after [`GAP_RESET`] lost frames in a row with
//! nothing held (the sender stopped), playout waits and primes again.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Frames beyond the depth tolerated before the oldest are dropped.
pub const SLACK: usize = 3;

/// Lost frames in a row, with nothing held, after which playout primes again.
pub const GAP_RESET: u32 = 25;

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Held for playout.
    Accepted,
    /// Its frame was already played (or skipped): dropped.
    Late,
    /// Already held: dropped.
    Duplicate,
    /// The buffer is at capacity: dropped.
    Overflow,
}

/// What to play at one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Not started (or primed again after a long gap): play nothing.
    Waiting,
    /// This tick's packet.
    Frame(Bytes),
    /// This tick's packet is missing; `next` is the following packet, if held, whose
    /// in-band FEC can rebuild this frame.
    Lost {
        /// The packet after the missing one.
        next: Option<Bytes>,
    },
}

/// A jitter buffer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Packets that came after their frame was played.
    pub late: u64,
    /// Packets pushed twice.
    pub duplicate: u64,
    /// Packets dropped at capacity.
    pub overflow: u64,
    /// Frames played from their packet.
    pub played: u64,
    /// Frames whose packet was missing at their tick.
    pub lost: u64,
    /// Frames dropped to keep latency bounded.
    pub dropped_for_latency: u64,
}

/// Packets of one stream, by extended sequence number, until their tick.
#[derive(Debug)]
pub struct JitterBuffer {
    depth: usize,
    capacity: usize,
    held: BTreeMap<u64, Bytes>,
    /// The next extended sequence number to play; `None` while priming.
    next: Option<u64>,
    /// The highest extended sequence number seen, for extending new ones.
    highest: Option<u64>,
    lost_in_a_row: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer that starts playout once `depth` frames are held and holds at most
    /// `capacity` (at least `depth + SLACK`).
    pub fn new(depth: usize, capacity: usize) -> JitterBuffer {
        let depth = depth.max(1);
        JitterBuffer {
            depth,
            capacity: capacity.max(depth + SLACK),
            held: BTreeMap::new(),
            next: None,
            highest: None,
            lost_in_a_row: 0,
            stats: JitterStats::default(),
        }
    }

    /// Takes a packet with RTP sequence number `seq`.
    pub fn push(&mut self, seq: u16, payload: Bytes) -> Pushed {
        self.stats.received += 1;
        let ext = self.extend(seq);
        if self.next.is_some_and(|next| ext < next) {
            self.stats.late += 1;
            return Pushed::Late;
        }
        if self.held.contains_key(&ext) {
            self.stats.duplicate += 1;
            return Pushed::Duplicate;
        }
        if self.held.len() >= self.capacity {
            self.stats.overflow += 1;
            return Pushed::Overflow;
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.held.insert(ext, payload);
        Pushed::Accepted
    }

    /// The frame for this tick.
    pub fn pop(&mut self) -> Playout {
        let next = match self.next {
            Some(next) => next,
            None => {
                if self.held.len() < self.depth {
                    return Playout::Waiting;
                }
                match self.held.keys().next() {
                    Some(&first) => first,
                    None => return Playout::Waiting,
                }
            }
        };
        let mut next = next;
        // Too much piled up: drop the oldest down to the depth, so a burst costs a
        // moment's audio once rather than latency for the rest of the call.
        if self.held.len() > self.depth + SLACK {
            while self.held.len() > self.depth {
                if let Some((&oldest, _)) = self.held.iter().next() {
                    self.held.remove(&oldest);
                    self.stats.dropped_for_latency += 1;
                    next = next.max(oldest + 1);
                }
            }
        }
        self.next = Some(next + 1);
        match self.held.remove(&next) {
            Some(payload) => {
                self.lost_in_a_row = 0;
                self.stats.played += 1;
                Playout::Frame(payload)
            }
            None => {
                self.stats.lost += 1;
                self.lost_in_a_row += 1;
                let first_held = self.held.keys().next().copied();
                if self.lost_in_a_row >= GAP_RESET && self.held.is_empty() {
                    // The sender stopped: wait for it and prime again.
                    self.next = None;
                    self.lost_in_a_row = 0;
                } else if let Some(first) = first_held
                    && first > next + u64::from(GAP_RESET)
                {
                    // The stream jumped ahead (a sender that started its numbering
                    // again): play from where it is rather than mark every number
                    // in between lost.
                    self.next = Some(first);
                    self.lost_in_a_row = 0;
                }
                Playout::Lost { next: self.held.get(&(next + 1)).cloned() }
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// `seq` as a 64-bit number continuing the stream across 16-bit wrap-arounds: the
    /// candidate nearest the highest number seen.
    fn extend(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Room below the first packet for late ones that wrap backwards.
            return (1 << 16) + u64::from(seq);
        };
        let cycle = highest & !0xffff;
        [cycle.wrapping_sub(1 << 16), cycle, cycle + (1 << 16)]
            .into_iter()
            .map(|c| c.wrapping_add(u64::from(seq)))
            .filter(|c| *c < (1 << 62))
            .min_by_key(|c| c.abs_diff(highest))
            .unwrap_or(cycle + u64::from(seq))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(n: u16) -> Bytes {
        Bytes::from(n.to_be_bytes().to_vec())
    }

    fn frame(n: u16) -> Playout {
        Playout::Frame(p(n))
    }

    #[test]
    fn plays_in_order_after_priming_and_reorders_within_depth() {
        let mut j = JitterBuffer::new(3, 50);
        assert_eq!(j.push(10, p(10)), Pushed::Accepted);
        assert_eq!(j.pop(), Playout::Waiting);
        j.push(12, p(12));
        assert_eq!(j.pop(), Playout::Waiting);
        j.push(11, p(11));
        assert_eq!(j.pop(), frame(10));
        assert_eq!(j.pop(), frame(11));
        j.push(13, p(13));
        assert_eq!(j.pop(), frame(12));
        assert_eq!(j.pop(), frame(13));
    }

    #[test]
    fn a_loss_carries_the_next_packet_for_fec_or_nothing() {
        let mut j = JitterBuffer::new(2, 50);
        for n in [1, 3, 4] {
            j.push(n, p(n));
        }
        assert_eq!(j.pop(), frame(1));
        assert_eq!(j.pop(), Playout::Lost { next: Some(p(3)) });
        assert_eq!(j.pop(), frame(3));
        assert_eq!(j.pop(), frame(4));
        assert_eq!(j.pop(), Playout::Lost { next: None });
        assert_eq!(j.stats().lost, 2);
        assert_eq!(j.stats().played, 3);
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let mut j = JitterBuffer::new(2, 50);
        for n in [65534, 65535, 0, 1] {
            assert_eq!(j.push(n, p(n)), Pushed::Accepted);
        }
        for n in [65534, 65535, 0, 1] {
            assert_eq!(j.pop(), frame(n));
        }
        // A late packet from before the wrap is recognised as late, not as far ahead.
        assert_eq!(j.push(65533, p(65533)), Pushed::Late);
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped() {
        let mut j = JitterBuffer::new(1, 50);
        j.push(5, p(5));
        assert_eq!(j.push(5, p(5)), Pushed::Duplicate);
        assert_eq!(j.pop(), frame(5));
        assert_eq!(j.push(5, p(5)), Pushed::Late);
        assert_eq!(j.push(4, p(4)), Pushed::Late);
        let s = j.stats();
        assert_eq!((s.received, s.duplicate, s.late), (4, 1, 2));
    }

    #[test]
    fn a_long_silence_primes_again() {
        let mut j = JitterBuffer::new(2, 50);
        j.push(1, p(1));
        j.push(2, p(2));
        assert_eq!(j.pop(), frame(1));
        assert_eq!(j.pop(), frame(2));
        for _ in 0..GAP_RESET {
            assert!(matches!(j.pop(), Playout::Lost { next: None }));
        }
        assert_eq!(j.pop(), Playout::Waiting, "the sender stopped: wait for it");
        // It comes back much later in the sequence: playout restarts there.
        j.push(500, p(500));
        assert_eq!(j.pop(), Playout::Waiting);
        j.push(501, p(501));
        assert_eq!(j.pop(), frame(500));
    }

    #[test]
    fn a_burst_is_trimmed_so_latency_stays_bounded() {
        let mut j = JitterBuffer::new(3, 50);
        for n in 0..20 {
            j.push(n, p(n));
        }
        // 0..=16 go; 17 plays; 18 and 19 stay (back below the depth).
        assert_eq!(j.pop(), frame(17));
        assert_eq!(j.len(), 2);
        assert!(j.stats().dropped_for_latency > 0);
    }

    #[test]
    fn a_stream_that_jumps_ahead_is_followed_at_once() {
        let mut j = JitterBuffer::new(1, 50);
        j.push(100, p(100));
        assert_eq!(j.pop(), frame(100));
        j.push(30_000, p(30_000));
        j.push(30_001, p(30_001));
        assert_eq!(j.pop(), Playout::Lost { next: None });
        assert_eq!(j.pop(), frame(30_000));
        assert_eq!(j.pop(), frame(30_001));
    }

    #[test]
    fn capacity_bounds_what_is_held() {
        let mut j = JitterBuffer::new(3, 8);
        for n in 0..8 {
            assert_eq!(j.push(n * 2, p(n)), Pushed::Accepted);
        }
        assert_eq!(j.push(100, p(100)), Pushed::Overflow);
        assert_eq!(j.len(), 8);
    }
}
