//! Text for character-level language models: a vocabulary of the characters a text
//! uses (sorted, so ids do not depend on the order of first appearance), and batches of
//! contiguous windows of token ids with their next-token targets.
//!
//! Batches are drawn from a generator seeded by `(seed, step)`, so the batch of step `s`
//! is a pure function of the seed and `s`: a resumed run sees exactly the batches it
//! would have seen without stopping, with no sampler state to save.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::DataError;

/// The distinct characters of a text, sorted; a character's id is its rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
}

impl CharVocab {
    /// The vocabulary of `text`: its distinct characters in code-point order.
    pub fn from_text(text: &str) -> CharVocab {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        CharVocab { chars }
    }

    /// A vocabulary from a list of characters (sorted and deduplicated here).
    pub fn from_chars(chars: &[char]) -> CharVocab {
        CharVocab::from_text(&chars.iter().collect::<String>())
    }

    /// Number of distinct characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary has no characters (it came from an empty text).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters, in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The ids of `text`'s characters; a character outside the vocabulary is an error
    /// naming it and its position.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>, DataError> {
        text.chars()
            .enumerate()
            .map(|(pos, c)| {
                self.chars.binary_search(&c).map_err(|_| {
                    DataError::InvalidArgument(format!(
                        "CharVocab::encode: character {c:?} at position {pos} is not in the \
                         vocabulary of {} characters",
                        self.len()
                    ))
                })
            })
            .collect()
    }

    /// The text of `ids`; an id past the vocabulary is an error naming it.
    pub fn decode(&self, ids: &[usize]) -> Result<String, DataError> {
        ids.iter()
            .map(|&id| {
                self.chars.get(id).copied().ok_or_else(|| {
                    DataError::InvalidArgument(format!(
                        "CharVocab::decode: id {id} is outside the vocabulary of {} characters",
                        self.len()
                    ))
                })
            })
            .collect()
    }
}

/// Splits `tokens` into its first `1 − tail_fraction` and its last `tail_fraction`
/// (the validation split of a language model is the end of the text, not a random
/// sample, so no window of it was seen in training).
pub fn split_tail(
    tokens: &[usize],
    tail_fraction: f64,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    if !(0.0..=1.0).contains(&tail_fraction) {
        return Err(DataError::InvalidArgument(format!(
            "split_tail: the tail fraction has to be in [0, 1], got {tail_fraction}"
        )));
    }
    let head = tokens.len() - (tokens.len() as f64 * tail_fraction).round() as usize;
    Ok((tokens[..head].to_vec(), tokens[head..].to_vec()))
}

/// A batch of `batch` windows of `context` token ids (row-major `[batch, context]`) and
/// the ids that follow each position (the same windows shifted by one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Input ids, `batch * context` of them.
    pub inputs: Vec<usize>,
    /// Target ids: `targets[i] = ` the id after `inputs[i]` in the text.
    pub targets: Vec<usize>,
    /// Windows in the batch.
    pub batch: usize,
    /// Window length.
    pub context: usize,
}

impl TokenBatch {
    /// The targets as `i64` class indices, as the cross-entropy loss takes them.
    pub fn targets_i64(&self) -> Vec<i64> {
        self.targets.iter().map(|&t| t as i64).collect()
    }
}

/// A token sequence cut into windows of `context` ids for next-token prediction.
#[derive(Debug, Clone)]
pub struct TokenWindows {
    tokens: Vec<usize>,
    context: usize,
}

impl TokenWindows {
    /// Windows of `context` ids over `tokens`; the sequence must hold at least one
    /// window plus its last target.
    pub fn new(tokens: Vec<usize>, context: usize) -> Result<TokenWindows, DataError> {
        if context == 0 {
            return Err(DataError::InvalidArgument(
                "TokenWindows: the context length has to be at least 1".to_string(),
            ));
        }
        if tokens.len() <= context {
            return Err(DataError::InvalidArgument(format!(
                "TokenWindows: {} tokens cannot hold a window of {context} plus its target",
                tokens.len()
            )));
        }
        Ok(TokenWindows { tokens, context })
    }

    /// The window length.
    pub fn context(&self) -> usize {
        self.context
    }

    /// The token ids.
    pub fn tokens(&self) -> &[usize] {
        &self.tokens
    }

    /// Number of distinct window starts.
    pub fn num_starts(&self) -> usize {
        self.tokens.len() - self.context
    }

    /// The batch made of windows starting at `starts`.
    pub fn batch_at(&self, starts: &[usize]) -> Result<TokenBatch, DataError> {
        let t = self.context;
        let mut inputs = Vec::with_capacity(starts.len() * t);
        let mut targets = Vec::with_capacity(starts.len() * t);
        for &s in starts {
            if s >= self.num_starts() {
                return Err(DataError::InvalidArgument(format!(
                    "TokenWindows::batch_at: a window of {t} starting at {s} runs past the \
                     {} tokens",
                    self.tokens.len()
                )));
            }
            inputs.extend_from_slice(&self.tokens[s..s + t]);
            targets.extend_from_slice(&self.tokens[s + 1..s + t + 1]);
        }
        Ok(TokenBatch {
            inputs,
            targets,
            batch: starts.len(),
            context: t,
        })
    }

    /// `batch` windows at uniformly random starts, drawn from a generator seeded by
    /// `(seed, step)`: the same arguments always give the same batch.
    pub fn random_batch(&self, batch: usize, seed: u64, step: u64) -> TokenBatch {
        let mut rng = StdRng::seed_from_u64(mix(seed, step));
        let starts: Vec<usize> = (0..batch)
            .map(|_| rng.random_range(0..self.num_starts()))
            .collect();
        self.batch_at(&starts).expect("starts drawn in range")
    }

    /// Starts of non-overlapping windows covering the sequence from the beginning (the
    /// tail shorter than a window is left out): every target is scored once.
    pub fn covering_starts(&self) -> Vec<usize> {
        (0..self.num_starts()).step_by(self.context).collect()
    }
}

/// Mixes a seed and a step into one generator seed (SplitMix64's finaliser, so nearby
/// steps give unrelated streams).
fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_is_sorted_and_round_trips() {
        let v = CharVocab::from_text("hello, world");
        assert_eq!(v.chars(), &[' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
        let ids = v.encode("hold").unwrap();
        assert_eq!(ids, vec![4, 6, 5, 2]);
        assert_eq!(v.decode(&ids).unwrap(), "hold");
        let err = v.encode("hex").unwrap_err().to_string();
        assert!(err.contains("'x'") && err.contains("position 2"), "{err}");
        let err = v.decode(&[9]).unwrap_err().to_string();
        assert!(
            err.contains("id 9") && err.contains("9 characters"),
            "{err}"
        );
    }

    #[test]
    fn tail_split_keeps_order() {
        let tokens: Vec<usize> = (0..20).collect();
        let (a, b) = split_tail(&tokens, 0.1).unwrap();
        assert_eq!(a, (0..18).collect::<Vec<_>>());
        assert_eq!(b, vec![18, 19]);
        assert!(split_tail(&tokens, 1.5).is_err());
    }

    #[test]
    fn windows_shift_targets_and_repeat_from_the_seed() {
        let w = TokenWindows::new((0..100).collect(), 8).unwrap();
        let b = w.random_batch(4, 7, 3);
        assert_eq!(b.inputs.len(), 32);
        for (x, y) in b.inputs.iter().zip(&b.targets) {
            assert_eq!(*y, x + 1);
        }
        assert_eq!(b, w.random_batch(4, 7, 3));
        assert_ne!(b, w.random_batch(4, 7, 4));
        assert_eq!(w.covering_starts().len(), 12);
        assert!(w.batch_at(&[92]).is_err());
        assert!(TokenWindows::new((0..8).collect(), 8).is_err());
    }
}
