//! `?` in `main` prints an error with `{:?}`: every error type's Debug must read as its
//! Display does, with no unfilled `{}` and no struct fields in the way.

use std::fmt::{Debug, Display};

use tapegrad::data::Table;
use tapegrad::io::{Checkpoint, IoError};
use tapegrad::optim::OptimError;
use tapegrad::{Tensor, TensorError};

fn reads_as_display<E: Debug + Display>(err: &E) {
    let debug = format!("{err:?}");
    assert_eq!(debug, err.to_string());
    assert!(!debug.contains("{}"), "unfilled placeholder in {debug:?}");
    assert!(!debug.contains("detail:"), "struct fields in {debug:?}");
}

#[test]
fn tensor_error_debug_names_the_shapes() {
    let err: TensorError = Tensor::zeros(&[3, 4])
        .try_matmul(&Tensor::zeros(&[5, 2]))
        .unwrap_err();
    reads_as_display(&err);
    assert_eq!(
        format!("{err:?}"),
        "matmul: cannot multiply [3, 4] by [5, 2]"
    );
    let err = Tensor::zeros(&[2, 3])
        .try_linear(&Tensor::zeros(&[4, 5]), None)
        .unwrap_err();
    reads_as_display(&err);
    assert!(format!("{err:?}").contains("[2, 3]"));
}

#[test]
fn data_error_debug_reads_as_display() {
    let err = Table::parse("a,b\n1,x\n").unwrap_err();
    reads_as_display(&err);
    assert!(format!("{err:?}").contains("line 2"));
    let wrapped = tapegrad::data::DataError::from(
        Tensor::zeros(&[2])
            .try_matmul(&Tensor::zeros(&[3]))
            .unwrap_err(),
    );
    reads_as_display(&wrapped);
}

#[test]
fn io_error_debug_reads_as_display() {
    let err: IoError = Checkpoint::from_bytes(b"not a checkpoint at all").unwrap_err();
    reads_as_display(&err);
    reads_as_display(&IoError::Mismatch(vec!["fc1.weight: missing".into()]));
}

#[test]
fn optim_error_debug_reads_as_display() {
    reads_as_display(&OptimError::InvalidHyperParameter(
        "Invalid learning rate: -0.1".into(),
    ));
    let err = OptimError::BufferLength {
        buffer: "exp_avg".into(),
        param: 1,
        expected: 6,
        found: 4,
    };
    reads_as_display(&err);
    assert!(format!("{err:?}").contains("parameter 1 has 4 elements"));
}
