//! The collectives data-parallel training needs, as a trait: MPI implements it (with the
//! `mpi` feature), and so does [`SingleProcess`], a world of one rank that runs the same
//! training code without MPI.

/// A group of ranks running the same program: who am I, how many are we, and the
/// collective operations. Every rank must make the same calls in the same order with
/// the same lengths, or the job hangs (as with any MPI program).
pub trait Communicator {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Element-wise sum of `send` over all ranks, written to `recv` on every rank
    /// (`MPI_Allreduce` with `MPI_SUM`). `send` and `recv` have the same length.
    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]);

    /// [`Communicator::all_reduce_sum`] in double precision, for metrics.
    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]);

    /// Copies `root`'s `buf` into every rank's `buf` (`MPI_Bcast`).
    fn broadcast(&self, buf: &mut [f32], root: usize);

    /// [`Communicator::broadcast`] of raw bytes.
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize);

    /// Concatenates every rank's `send`, in rank order, into `recv` on every rank
    /// (`MPI_Allgather`); `recv` is `size()` times as long as `send`.
    fn all_gather(&self, send: &[f32], recv: &mut [f32]);

    /// Waits until every rank has arrived.
    fn barrier(&self);

    /// Ends the whole job at once, on every rank (`MPI_Abort`), with `code` as its exit
    /// status.
    fn abort(&self, code: i32) -> !;
}

/// A world of one: rank 0 of 1, where every collective is a copy. Training code written
/// against [`Communicator`] runs unchanged in a plain process.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        recv.copy_from_slice(send);
    }

    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]) {
        recv.copy_from_slice(send);
    }

    fn broadcast(&self, _buf: &mut [f32], root: usize) {
        assert_eq!(root, 0, "broadcast from rank {root} in a world of one rank");
    }

    fn broadcast_bytes(&self, _buf: &mut [u8], root: usize) {
        assert_eq!(root, 0, "broadcast from rank {root} in a world of one rank");
    }

    fn all_gather(&self, send: &[f32], recv: &mut [f32]) {
        recv.copy_from_slice(send);
    }

    fn barrier(&self) {}

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// A reference to a communicator is one, so `&world` works wherever a communicator is
/// taken by value or by generic reference (as in [`crate::rank0_println!`]).
impl<C: Communicator + ?Sized> Communicator for &C {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn size(&self) -> usize {
        (**self).size()
    }

    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        (**self).all_reduce_sum(send, recv)
    }

    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]) {
        (**self).all_reduce_sum_f64(send, recv)
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) {
        (**self).broadcast(buf, root)
    }

    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) {
        (**self).broadcast_bytes(buf, root)
    }

    fn all_gather(&self, send: &[f32], recv: &mut [f32]) {
        (**self).all_gather(send, recv)
    }

    fn barrier(&self) {
        (**self).barrier()
    }

    fn abort(&self, code: i32) -> ! {
        (**self).abort(code)
    }
}
