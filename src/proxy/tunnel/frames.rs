//! Where websocket frames end in one direction of a tunnel (RFC 6455 5.2), so that a stopping
//! server can put its own close frame between two frames rather than into one. Only the frame
//! headers are looked at; payloads pass untouched.

/// The close frame vestibule sends a client when it stops: status 1001, "going away".
pub const GOING_AWAY_TO_CLIENT: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

/// The same close frame towards the upstream, masked as a client's frames must be (RFC 6455 5.3).
pub fn going_away_to_upstream() -> [u8; 8] {
    let mut key = [0u8; 4];
    // A failed draw leaves the zero key: still a valid masked frame.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key);
    [
        0x88,
        0x82,
        key[0],
        key[1],
        key[2],
        key[3],
        0x03 ^ key[0],
        0xE9 ^ key[1],
    ]
}

/// The frame-boundary state of one direction: 16 bytes, no buffer.
#[derive(Debug, Default)]
pub struct Frames {
    /// Header bytes seen of the frame being started (at most 14).
    have: u8,
    /// Header length once its second byte told it (0 before).
    need: u8,
    /// The first bytes of a header: enough to read the extended length.
    header: [u8; 10],
    /// Payload bytes still to come of the current frame.
    left: u64,
}

impl Frames {
    /// Between two frames.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    /// Account for `data` passing; returns the length of its longest prefix that ends between two
    /// frames (`None` when no frame ends in it).
    pub fn advance(&mut self, data: &[u8]) -> Option<usize> {
        let mut last = None;
        let mut i = 0;
        while i < data.len() {
            if self.left > 0 {
                let take = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                self.left -= take as u64;
                i += take;
                if self.left == 0 {
                    last = Some(i);
                }
                continue;
            }
            let b = data[i];
            i += 1;
            if usize::from(self.have) < self.header.len() {
                self.header[usize::from(self.have)] = b;
            }
            self.have += 1;
            if self.have == 2 {
                let masked = if b & 0x80 != 0 { 4 } else { 0 };
                let ext = match b & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                self.need = 2 + ext + masked;
            }
            if self.have >= 2 && self.have == self.need {
                self.left = match self.header[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                    127 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&self.header[2..10]);
                        u64::from_be_bytes(n)
                    }
                    n => u64::from(n),
                };
                self.have = 0;
                self.need = 0;
                if self.left == 0 {
                    last = Some(i);
                }
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ends_of_small_extended_and_masked_frames() {
        let mut f = Frames::default();
        // "hi" unmasked, then the first half of a masked 3-byte frame.
        let data = [0x81, 0x02, b'h', b'i', 0x81, 0x83, 1, 2];
        assert_eq!(f.advance(&data), Some(4));
        assert!(!f.at_boundary());
        assert_eq!(f.advance(&[3, 4, b'a', b'b']), None);
        assert_eq!(f.advance(b"c"), Some(1));
        assert!(f.at_boundary());
        // A 300-byte frame (16-bit length), its header split across reads.
        assert_eq!(f.advance(&[0x82, 126]), None);
        assert_eq!(f.advance(&[0x01, 0x2c]), None);
        assert_eq!(f.advance(&[0u8; 299]), None);
        assert!(!f.at_boundary());
        assert_eq!(f.advance(&[0u8; 1]), Some(1));
        // An empty ping, and a 64-bit length.
        assert_eq!(f.advance(&[0x89, 0x00]), Some(2));
        let mut big = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        big.extend(vec![0u8; 65_536]);
        assert_eq!(f.advance(&big), Some(big.len()));
        assert!(f.at_boundary());
    }

    #[test]
    fn close_frames_are_1001() {
        assert_eq!(&GOING_AWAY_TO_CLIENT[2..], &1001u16.to_be_bytes());
        let up = going_away_to_upstream();
        assert_eq!(up[1], 0x82);
        let code = [up[6] ^ up[2], up[7] ^ up[3]];
        assert_eq!(code, 1001u16.to_be_bytes());
    }
}
