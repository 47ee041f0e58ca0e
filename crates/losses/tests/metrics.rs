//! Accuracy and the running mean against values worked out by hand (and by
//! `torch.topk`'s definition for distinct scores).

use tapegrad_autograd::Tensor;
use tapegrad_losses::metrics::{accuracy, top_k_accuracy, RunningMean};

fn logits() -> Tensor {
    // Row-wise class ranking: row 0: 2 > 0 > 1 > 3; row 1: 1 > 3 > 2 > 0; row 2: 3 > 2 > 1 > 0.
    Tensor::from_vec(
        vec![
            0.5, 0.1, 0.9, -1.0, //
            -2.0, 3.0, 0.0, 1.0, //
            0.0, 0.1, 0.2, 0.3,
        ],
        &[3, 4],
    )
    .unwrap()
}

#[test]
fn top_k_counts_the_target_within_the_k_best() {
    let targets = [0, 1, 1];
    assert_eq!(accuracy(&logits(), &targets).unwrap(), 1.0 / 3.0);
    assert_eq!(top_k_accuracy(&logits(), &targets, 2).unwrap(), 2.0 / 3.0);
    assert_eq!(top_k_accuracy(&logits(), &targets, 3).unwrap(), 1.0);
    assert_eq!(top_k_accuracy(&logits(), &[3, 0, 0], 4).unwrap(), 1.0);
    assert_eq!(top_k_accuracy(&logits(), &[3, 0, 0], 3).unwrap(), 0.0);
}

#[test]
fn ties_go_to_the_lower_class_as_argmax() {
    let tied = Tensor::from_vec(vec![1.0, 1.0, 0.0], &[1, 3]).unwrap();
    assert_eq!(accuracy(&tied, &[0]).unwrap(), 1.0);
    assert_eq!(accuracy(&tied, &[1]).unwrap(), 0.0);
    assert_eq!(top_k_accuracy(&tied, &[1], 2).unwrap(), 1.0);
}

#[test]
fn bad_input_names_the_problem() {
    let err = accuracy(&logits(), &[0, 1]).unwrap_err().to_string();
    assert_eq!(err, "top_k_accuracy: 3 rows of logits but 2 targets");
    let err = accuracy(&logits(), &[0, 1, 4]).unwrap_err().to_string();
    assert!(
        err.contains("target 4 is out of bounds for 4 classes"),
        "{err}"
    );
    assert!(accuracy(&logits(), &[0, 1, -1]).is_err());
    assert!(accuracy(&Tensor::zeros(&[4]), &[0]).is_err());
    assert!(top_k_accuracy(&logits(), &[0, 1, 1], 0).is_err());
}

#[test]
fn running_mean_weights_by_count() {
    let mut m = RunningMean::new();
    assert!(m.mean().is_nan());
    for (v, n) in [(1.0, 10), (4.0, 5), (0.0, 5)] {
        m.add(v, n);
    }
    assert_eq!(m.mean(), 1.5);
    assert_eq!(m.count(), 20);
    m.reset();
    m.add(3.0, 1);
    assert_eq!(m.mean(), 3.0);
}
