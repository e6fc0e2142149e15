//! Reading a fuzz input as a script of operations and operands, shared by the targets that
//! take one (`server`, `room_output`): bytes past the end read as 0, so every input is a
//! complete script.
#![allow(dead_code)] // each target uses the readers it needs

/// The rest of a fuzz input, read front to back.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    /// Two bytes, big-endian.
    pub fn u16(&mut self) -> usize {
        usize::from(u16::from_be_bytes([self.byte(), self.byte()]))
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }

    /// `len` bytes repeating a pattern of 1 to 16 bytes read from the input.
    pub fn repeated(&mut self, len: usize) -> Vec<u8> {
        let n = usize::from(self.byte() % 16) + 1;
        let mut pattern = self.bytes(n);
        if pattern.is_empty() {
            pattern.push(b'x');
        }
        pattern.iter().copied().cycle().take(len).collect()
    }
}
