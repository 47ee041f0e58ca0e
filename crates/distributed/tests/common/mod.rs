//! Code shared by the tests (and, through a `#[path]`, the MPI worker binary).

#![allow(dead_code)]

pub mod scenario;
