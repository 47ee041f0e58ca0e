//! CSV errors with positions, the split, the standardiser and the loader's batches,
//! shuffles and resumable state.

use tapegrad_autograd::Tensor;
use tapegrad_data::{
    read_csv, train_test_split, DataError, DataLoader, Standardizer, Table, TensorDataset,
};

#[test]
fn csv_parses_numbers_and_names_bad_positions() {
    let t = Table::parse("a,b,y\n1,2,3\n\n4,5.5,6\n").unwrap();
    assert_eq!(t.header, ["a", "b", "y"]);
    assert_eq!((t.rows(), t.cols()), (2, 3));
    assert_eq!(t.values, [1.0, 2.0, 3.0, 4.0, 5.5, 6.0]);
    assert_eq!(
        Table::parse("a,b\n1,2\n3\n").unwrap_err(),
        DataError::Ragged {
            line: 3,
            expected: 2,
            got: 1
        }
    );
    let err = Table::parse("a,b\n1,x\n").unwrap_err();
    assert_eq!(
        err,
        DataError::NotANumber {
            line: 2,
            column: 2,
            text: "x".into()
        }
    );
    assert_eq!(err.to_string(), "line 2, column 2: \"x\" is not a number");
    assert!(matches!(Table::parse(""), Err(DataError::Empty { .. })));
    assert!(matches!(
        Table::parse("a,b\n"),
        Err(DataError::Empty { .. })
    ));
    assert!(matches!(
        Table::parse("a\nNaN\n"),
        Err(DataError::NotANumber { .. })
    ));
}

#[test]
fn read_csv_names_the_file() {
    let err = read_csv("/nonexistent/file.csv").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/file.csv"), "{err}");
    let dir = std::env::temp_dir().join(format!("tapegrad-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.csv");
    std::fs::write(&path, "a,b\n1,2\n3,4,5\n").unwrap();
    let err = read_csv(&path).unwrap_err().to_string();
    assert!(err.contains("bad.csv") && err.contains("line 3"), "{err}");
}

#[test]
fn the_repository_data_sets_load() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/");
    let diabetes = read_csv(format!("{root}diabetes.csv")).unwrap();
    assert_eq!((diabetes.rows(), diabetes.cols()), (442, 11));
    let digits =
        TensorDataset::from_table(&read_csv(format!("{root}digits.csv")).unwrap()).unwrap();
    assert_eq!(digits.features.shape(), &[1797, 64]);
    assert!(digits
        .class_targets()
        .unwrap()
        .iter()
        .all(|c| (0..10).contains(c)));
}

#[test]
fn split_is_seeded_and_complete() {
    let (train, test) = train_test_split(10, 0.2, 3).unwrap();
    assert_eq!((train.len(), test.len()), (8, 2));
    let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(train_test_split(10, 0.2, 3).unwrap(), (train, test));
    assert_ne!(
        train_test_split(10, 0.2, 4).unwrap().1,
        train_test_split(10, 0.2, 3).unwrap().1
    );
    assert!(train_test_split(10, 1.5, 0).is_err());
}

#[test]
fn standardizer_centres_and_scales_columns() {
    let x = Tensor::from_slice(&[1.0, 10.0, 3.0, 10.0, 5.0, 10.0], &[3, 2]).unwrap();
    let s = Standardizer::fit(&x).unwrap();
    assert_eq!(s.mean, [3.0, 10.0]);
    assert_eq!(s.std[1], 1.0, "a constant column is left unscaled");
    let y = s.apply(&x).unwrap().to_vec();
    assert!((y[0] + 1.2247449).abs() < 1e-6 && y[1] == 0.0);
    assert!(s.apply(&Tensor::zeros(&[2, 3])).is_err());
}

fn dataset(n: usize) -> TensorDataset {
    let x = Tensor::arange(0.0, n as f32, 1.0).unwrap().reshape(&[n, 1]);
    TensorDataset::new(x.clone(), &x * 10.0).unwrap()
}

fn epoch_rows(loader: &mut DataLoader) -> Vec<Vec<f32>> {
    loader.epoch().map(|b| b.x.to_vec()).collect()
}

#[test]
fn loader_batches_in_order_with_or_without_the_tail() {
    let mut loader = DataLoader::new(dataset(5), 2).unwrap();
    assert_eq!(
        epoch_rows(&mut loader),
        vec![vec![0.0, 1.0], vec![2.0, 3.0], vec![4.0]]
    );
    assert_eq!(loader.state().epoch, 1);
    let mut dropping = DataLoader::new(dataset(5), 2).unwrap().drop_last(true);
    assert_eq!(dropping.batches_per_epoch(), 2);
    assert_eq!(epoch_rows(&mut dropping).len(), 2);
    let batch = DataLoader::new(dataset(3), 3)
        .unwrap()
        .epoch()
        .next()
        .unwrap();
    assert_eq!(
        batch.y.to_vec(),
        [0.0, 10.0, 20.0],
        "targets travel with their features"
    );
    assert!(DataLoader::new(dataset(3), 0).is_err());
}

#[test]
fn loader_reshuffles_each_epoch_and_resumes_exactly() {
    let mut loader = DataLoader::new(dataset(20), 3).unwrap().shuffle(42);
    let first = epoch_rows(&mut loader);
    let second = epoch_rows(&mut loader);
    assert_ne!(first, second, "a new order each epoch");
    let mut sorted: Vec<f32> = first.concat();
    sorted.sort_by(f32::total_cmp);
    assert_eq!(sorted, (0..20).map(|i| i as f32).collect::<Vec<_>>());

    // Stop mid-epoch, save, and continue in a fresh loader: the same batches follow.
    let mut a = DataLoader::new(dataset(20), 3).unwrap().shuffle(42);
    let _ = epoch_rows(&mut a);
    let mut it = a.epoch();
    let _ = (it.next(), it.next());
    let saved = a.state();
    let rest_a: Vec<Vec<f32>> = a.epoch().map(|b| b.x.to_vec()).collect();
    let mut b = DataLoader::new(dataset(20), 3).unwrap().shuffle(42);
    b.load_state(saved).unwrap();
    let rest_b: Vec<Vec<f32>> = b.epoch().map(|b| b.x.to_vec()).collect();
    assert_eq!(rest_a, rest_b);
    assert_eq!(rest_a, second[2..].to_vec());
    let mut other_seed = DataLoader::new(dataset(20), 3).unwrap().shuffle(7);
    assert!(other_seed.load_state(saved).is_err());
}
