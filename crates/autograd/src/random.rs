//! The default random generator, PyTorch's habit: [`manual_seed`] seeds a per-thread
//! generator that the constructors (`Tensor::rand`-style helpers, every layer's
//! `new`) draw from, so a program seeds once and never passes a generator around.
//!
//! Forms that take an explicit generator (`Tensor::uniform(.., &mut rng)`,
//! `Linear::new_with_rng`) stay for callers who want their own stream. Its state can
//! be read and restored ([`default_rng_state`], [`set_default_rng_state`]) so that a
//! checkpoint resumes the draws (Dropout's masks) to the bit, as
//! `torch.get_rng_state()` does.

use std::cell::RefCell;

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// The generator behind [`manual_seed`]: ChaCha with 12 rounds (what `rand`'s `StdRng`
/// is today), named explicitly because its position can be saved and restored.
pub type DefaultRng = ChaCha12Rng;

/// The seed a thread's default generator starts from before any [`manual_seed`]:
/// PyTorch's `torch.initial_seed()` on a fresh CPU process.
pub const DEFAULT_SEED: u64 = 67_280_421_310_721;

thread_local! {
    static DEFAULT: RefCell<DefaultRng> = RefCell::new(DefaultRng::seed_from_u64(DEFAULT_SEED));
}

/// Seeds this thread's default generator (PyTorch's `torch.manual_seed`).
pub fn manual_seed(seed: u64) {
    DEFAULT.with(|g| *g.borrow_mut() = DefaultRng::seed_from_u64(seed));
}

/// Runs `f` with this thread's default generator.
///
/// `f` must not call back into `with_default_rng` (the generator is borrowed for the
/// call); constructors take the generator once and pass it down.
pub fn with_default_rng<T>(f: impl FnOnce(&mut DefaultRng) -> T) -> T {
    DEFAULT.with(|g| f(&mut g.borrow_mut()))
}

/// Where the default generator is: its key, stream and position in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngState {
    /// The ChaCha key the generator was seeded with.
    pub seed: [u8; 32],
    /// The ChaCha stream number.
    pub stream: u64,
    /// How many 32-bit words of the stream have been used.
    pub word_pos: u128,
}

impl RngState {
    /// Length of [`RngState::to_bytes`].
    pub const BYTES: usize = 32 + 8 + 16;

    /// A fixed little-endian encoding, for checkpoints.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::BYTES);
        out.extend_from_slice(&self.seed);
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&self.word_pos.to_le_bytes());
        out
    }

    /// Decodes [`RngState::to_bytes`]; any other length is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<RngState> {
        if bytes.len() != Self::BYTES {
            return Err(TensorError::InvalidArgument {
                op: "RngState::from_bytes",
                reason: format!(
                    "a generator state is {} bytes, got {}",
                    Self::BYTES,
                    bytes.len()
                ),
            });
        }
        let (seed, rest) = bytes.split_at(32);
        let (stream, word_pos) = rest.split_at(8);
        Ok(RngState {
            seed: seed.try_into().expect("split at 32"),
            stream: u64::from_le_bytes(stream.try_into().expect("split at 8")),
            word_pos: u128::from_le_bytes(word_pos.try_into().expect("16 bytes left")),
        })
    }

    /// A generator positioned where this state says.
    pub fn to_rng(&self) -> DefaultRng {
        let mut rng = DefaultRng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }

    /// The state of any generator of the default kind.
    pub fn of(rng: &DefaultRng) -> RngState {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }
}

/// The default generator's current state (PyTorch's `torch.get_rng_state`).
pub fn default_rng_state() -> RngState {
    with_default_rng(|rng| RngState::of(rng))
}

/// Puts the default generator back to a saved state (PyTorch's `torch.set_rng_state`).
pub fn set_default_rng_state(state: &RngState) {
    DEFAULT.with(|g| *g.borrow_mut() = state.to_rng());
}

impl Tensor {
    /// Samples from U(0, 1) drawn from the default generator (PyTorch's `torch.rand`).
    pub fn rand(shape: &[usize]) -> Result<Tensor> {
        with_default_rng(|rng| Tensor::uniform(shape, 0.0, 1.0, rng))
    }

    /// Samples from N(0, 1) drawn from the default generator (PyTorch's `torch.randn`).
    pub fn randn(shape: &[usize]) -> Result<Tensor> {
        with_default_rng(|rng| Tensor::normal(shape, 0.0, 1.0, rng))
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn manual_seed_repeats_the_draws() {
        manual_seed(7);
        let a: Vec<u32> = with_default_rng(|r| (0..5).map(|_| r.random()).collect());
        manual_seed(7);
        let b: Vec<u32> = with_default_rng(|r| (0..5).map(|_| r.random()).collect());
        assert_eq!(a, b);
        manual_seed(8);
        let c: Vec<u32> = with_default_rng(|r| (0..5).map(|_| r.random()).collect());
        assert_ne!(a, c);
    }

    #[test]
    fn a_saved_state_resumes_the_stream_mid_way() {
        manual_seed(3);
        with_default_rng(|r| {
            (0..7).for_each(|_| {
                r.random::<u64>();
            })
        });
        let saved = RngState::from_bytes(&default_rng_state().to_bytes()).unwrap();
        let expected: Vec<f32> = with_default_rng(|r| (0..9).map(|_| r.random()).collect());
        manual_seed(99);
        set_default_rng_state(&saved);
        let resumed: Vec<f32> = with_default_rng(|r| (0..9).map(|_| r.random()).collect());
        assert_eq!(expected, resumed);
        assert!(RngState::from_bytes(&[0; 3]).is_err());
    }

    #[test]
    fn rand_and_randn_follow_the_seed() {
        manual_seed(11);
        let a = Tensor::randn(&[4]).unwrap().to_vec();
        let u = Tensor::rand(&[4]).unwrap().to_vec();
        manual_seed(11);
        assert_eq!(Tensor::randn(&[4]).unwrap().to_vec(), a);
        assert_eq!(Tensor::rand(&[4]).unwrap().to_vec(), u);
        assert!(u.iter().all(|v| (0.0..1.0).contains(v)));
    }
}
