//! Lock-free allocation: each worker takes chunks of blocks (1024, fewer in a small arena) with
//! one compare-and-swap on the half's cursor and carves nodes from the chunk's front and child
//! arrays from its back.

use std::sync::atomic::Ordering;

use crate::TreeError;
use crate::arena::{Arena, BLOCK_WORDS};

/// A process-local allocator over one chunk of one half.
pub(crate) struct ChunkAlloc {
    half: u32,
    generation: u32,
    /// Next free block at the chunk's front.
    front: u32,
    /// End (exclusive) of the free words at the chunk's back.
    back: u32,
    /// A node allocated but not used (lost a materialisation race), handed out next.
    spare: Option<u32>,
}

impl ChunkAlloc {
    /// An empty allocator for `half` as of the arena's current generation.
    pub fn new(arena: &Arena, half: u32) -> ChunkAlloc {
        ChunkAlloc {
            half,
            // Relaxed: the generation changes only between searches.
            generation: arena.header().generation.load(Ordering::Relaxed),
            front: 0,
            back: 0,
            spare: None,
        }
    }

    /// Drops the chunk if the tree was reset or re-rooted since it was taken.
    pub fn follow(&mut self, arena: &Arena) {
        // Relaxed: changes only between searches.
        if arena.header().generation.load(Ordering::Relaxed) != self.generation {
            *self = ChunkAlloc::new(arena, arena.active());
        }
    }

    /// A node block (uninitialised).
    pub fn node(&mut self, arena: &Arena) -> Result<u32, TreeError> {
        if let Some(spare) = self.spare.take() {
            return Ok(spare);
        }
        if (self.front + 1) * BLOCK_WORDS > self.back {
            self.refill(arena)?;
        }
        self.front += 1;
        Ok(self.front - 1)
    }

    /// Keeps an unused node for the next `node` call.
    pub fn give_back(&mut self, index: u32) {
        self.spare = Some(index);
    }

    /// `words` consecutive words (uninitialised).
    pub fn words(&mut self, arena: &Arena, words: u32) -> Result<u32, TreeError> {
        debug_assert!(words <= arena.chunk_blocks() * BLOCK_WORDS);
        // A loop: the last chunk of a half may be too small, and is then left unused.
        while self.back < words || self.back - words < self.front * BLOCK_WORDS {
            self.refill(arena)?;
        }
        self.back -= words;
        Ok(self.back)
    }

    /// Takes a fresh chunk, abandoning what is left of the current one.
    fn refill(&mut self, arena: &Arena) -> Result<(), TreeError> {
        let header = arena.header();
        let cursor = &header.cursor[self.half as usize];
        let limit = arena.half_start(self.half) + arena.half_blocks();
        let chunk = arena.chunk_blocks();
        // Relaxed: the cursor only hands out disjoint ranges; their contents are published
        // later by release stores of slots and states.
        let taken = cursor.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            (c < limit).then(|| c + chunk.min(limit - c))
        });
        match taken {
            Ok(start) => {
                let end = start + chunk.min(limit - start);
                self.front = start;
                self.back = end * BLOCK_WORDS;
                Ok(())
            }
            Err(_) => {
                // Relaxed: a sticky flag for reports and the checker.
                if header.overflowed.swap(1, Ordering::Relaxed) == 0 {
                    tracing::info!("arena full: the tree stops growing");
                }
                Err(TreeError::ArenaFull)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_words_never_overlap_and_exhaustion_is_reported() {
        let arena = Arena::create(1 << 20, 1).unwrap();
        let mut a = ChunkAlloc::new(&arena, arena.active());
        let words = (arena.half_blocks() * BLOCK_WORDS) as usize;
        let mut used = vec![false; words];
        let mut full = false;
        for i in 0..100_000 {
            let r = if i % 3 == 0 {
                a.words(&arena, 37).map(|w| w..w + 37)
            } else {
                a.node(&arena)
                    .map(|b| b * BLOCK_WORDS..(b + 1) * BLOCK_WORDS)
            };
            match r {
                Ok(range) => {
                    assert!(range.start >= BLOCK_WORDS, "block 0 handed out");
                    for w in range {
                        assert!(!used[w as usize], "word {w} handed out twice");
                        used[w as usize] = true;
                    }
                }
                Err(TreeError::ArenaFull) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full);
        assert_eq!(arena.header().overflowed.load(Ordering::Relaxed), 1);
    }
}
