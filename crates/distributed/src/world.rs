//! The MPI world (with the `mpi` feature): initialising MPI, the collectives over
//! `MPI_COMM_WORLD`, and making a failing rank end the whole job instead of hanging it.
//!
//! # What happens when a rank fails
//!
//! MPI's default error handler on `MPI_COMM_WORLD` is `MPI_ERRORS_ARE_FATAL`: an error
//! inside an MPI call (a peer's connection lost, a bad argument) aborts every process of
//! the job. But a rank can fail *outside* MPI: a Rust panic unwinds, drops the
//! [`World`] and would call `MPI_Finalize`, a collective the other ranks never join
//! because they wait in their next all-reduce; the job would hang. So [`World::init`]
//! installs a panic hook that prints the panic with the rank and then calls `MPI_Abort`,
//! which makes the launcher (`mpirun`) kill every rank and exit with a non-zero status.
//! A rank killed by a signal never reaches MPI again; Open MPI's launcher notices the
//! process died without finalising and kills the others itself, saying which rank
//! died and of which signal. [`run`] covers the third way out: an `Err` returned from
//! the training function is printed and the job aborted, rather than finalised.

use std::error::Error;
use std::fmt;
use std::rc::Rc;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};

use crate::comm::Communicator;

/// The largest count passed to one MPI call (counts are C ints).
const MAX_COUNT: usize = 1 << 30;

/// MPI could not be started (it was initialised already, for instance).
#[derive(Debug, Clone)]
pub struct InitError(pub String);

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MPI initialisation failed: {}", self.0)
    }
}

impl Error for InitError {}

struct Inner {
    comm: SimpleCommunicator,
    rank: usize,
    size: usize,
    // Dropped last: finalises MPI when the last handle to the world goes.
    _universe: Universe,
}

/// All the processes `mpirun` started: rank and size, and the collectives. Cloning is
/// cheap (a shared handle); MPI is finalised when the last clone is dropped.
#[derive(Clone)]
pub struct World {
    inner: Rc<Inner>,
}

impl World {
    /// Initialises MPI (once per process) and installs the panic hook that aborts the
    /// whole job when any rank panics (see the module documentation).
    pub fn init() -> Result<World, InitError> {
        let universe = mpi::initialize()
            .ok_or_else(|| InitError("MPI was already initialised in this process".to_string()))?;
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        install_abort_on_panic(rank, size);
        Ok(World {
            inner: Rc::new(Inner {
                comm,
                rank,
                size,
                _universe: universe,
            }),
        })
    }

    /// The underlying rsmpi communicator, for anything this crate does not wrap.
    pub fn raw(&self) -> &SimpleCommunicator {
        &self.inner.comm
    }

    /// The name of the machine this rank runs on (`MPI_Get_processor_name`).
    pub fn processor_name(&self) -> String {
        mpi::environment::processor_name().unwrap_or_else(|_| "unknown".into())
    }
}

/// Prints the panic as usual, then which rank it was, then calls `MPI_Abort`.
fn install_abort_on_panic(rank: usize, size: usize) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if mpi::is_initialized() && !mpi::is_finalized() {
            eprintln!(
                "tapegrad-distributed: rank {rank} of {size} panicked; calling MPI_Abort \
                 so that the whole job stops instead of waiting for this rank"
            );
            SimpleCommunicator::world().abort(101);
        }
    }));
}

/// Runs `train` on the world, the way every distributed `main` should: MPI is
/// initialised (with the panic hook), and an `Err` from `train` is printed with the rank
/// and ends the whole job (`MPI_Abort`, exit status 1) instead of leaving the other
/// ranks waiting. On success MPI is finalised after every rank returns.
pub fn run<F>(train: F)
where
    F: FnOnce(&World) -> Result<(), Box<dyn Error>>,
{
    let world = match World::init() {
        Ok(world) => world,
        Err(e) => {
            eprintln!("tapegrad-distributed: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = train(&world) {
        eprintln!(
            "tapegrad-distributed: rank {} of {} failed: {e}; calling MPI_Abort",
            world.rank(),
            world.size()
        );
        world.abort(1);
    }
}

impl Communicator for World {
    fn rank(&self) -> usize {
        self.inner.rank
    }

    fn size(&self) -> usize {
        self.inner.size
    }

    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(
            send.len(),
            recv.len(),
            "all_reduce_sum: buffer lengths differ"
        );
        for (s, r) in send.chunks(MAX_COUNT).zip(recv.chunks_mut(MAX_COUNT)) {
            self.inner
                .comm
                .all_reduce_into(s, r, SystemOperation::sum());
        }
    }

    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]) {
        assert_eq!(
            send.len(),
            recv.len(),
            "all_reduce_sum_f64: buffer lengths differ"
        );
        for (s, r) in send.chunks(MAX_COUNT).zip(recv.chunks_mut(MAX_COUNT)) {
            self.inner
                .comm
                .all_reduce_into(s, r, SystemOperation::sum());
        }
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) {
        let root = self.inner.comm.process_at_rank(root as i32);
        for chunk in buf.chunks_mut(MAX_COUNT) {
            root.broadcast_into(chunk);
        }
    }

    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) {
        let root = self.inner.comm.process_at_rank(root as i32);
        for chunk in buf.chunks_mut(MAX_COUNT) {
            root.broadcast_into(chunk);
        }
    }

    fn all_gather(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(
            recv.len(),
            send.len() * self.inner.size,
            "all_gather: the receive buffer must hold every rank's send buffer"
        );
        assert!(
            send.len() <= MAX_COUNT,
            "all_gather of {} elements per rank is over MPI's count limit",
            send.len()
        );
        self.inner.comm.all_gather_into(send, recv);
    }

    fn barrier(&self) {
        self.inner.comm.barrier();
    }

    fn abort(&self, code: i32) -> ! {
        self.inner.comm.abort(code)
    }
}
