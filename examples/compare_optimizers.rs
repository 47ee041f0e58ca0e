//! Which training strategy? The same two tasks under the same budget of epochs:
//! full-batch gradient descent, SGD on one sample per step, mini-batch SGD, SGD with
//! momentum, Adam, AdamW and RMSprop. Prints a table (final training loss, optimizer
//! steps until the loss first drops below a threshold, wall time) and draws the loss
//! curves to `target/compare_optimizers.svg`.
//!
//! Run: `cargo run --release --example compare_optimizers`

use std::error::Error;
use std::time::Instant;

use plotters::prelude::*;
use tapegrad::data::{read_csv, DataLoader, Standardizer, TensorDataset};
use tapegrad::losses::{CrossEntropyLoss, MseLoss};
use tapegrad::nn::{Linear, Module, Relu, Sequential};
use tapegrad::optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, GradientDescent, GradientDescentConfig, Optimizer,
    RMSprop, RMSpropConfig, Sgd, SgdConfig,
};
use tapegrad::{no_grad, Tensor};

/// A data set and how its loss is measured.
struct Task {
    name: &'static str,
    data: TensorDataset,
    classification: bool,
    hidden: usize,
    outputs: usize,
    epochs: usize,
    threshold: f32,
}

impl Task {
    /// The task's loss of `net` on some samples.
    fn loss(&self, net: &Sequential, x: &Tensor, y: &Tensor) -> Tensor {
        let out = net.forward(x);
        if self.classification {
            let classes: Vec<i64> = y.data().iter().map(|&c| c as i64).collect();
            CrossEntropyLoss::new().forward(&out, &classes)
        } else {
            MseLoss::new().forward(&out, y)
        }
    }

    fn full_loss(&self, net: &Sequential) -> f32 {
        no_grad(|| self.loss(net, &self.data.features, &self.data.targets)).item()
    }
}

/// A strategy: its name, its batch size (0 = the whole data set) and its optimizer.
struct Strategy {
    name: &'static str,
    batch: usize,
    make: fn(Vec<Tensor>) -> Box<dyn Optimizer>,
}

fn strategies() -> Vec<Strategy> {
    vec![
        Strategy {
            name: "GD (full batch)",
            batch: 0,
            make: |p| {
                Box::new(
                    GradientDescent::new(p, GradientDescentConfig { lr: 0.1 }).expect("valid lr"),
                )
            },
        },
        Strategy {
            name: "SGD (1 sample)",
            batch: 1,
            make: |p| {
                Box::new(
                    Sgd::new(
                        p,
                        SgdConfig {
                            lr: 0.005,
                            ..Default::default()
                        },
                    )
                    .expect("valid lr"),
                )
            },
        },
        Strategy {
            name: "mini-batch SGD (32)",
            batch: 32,
            make: |p| {
                Box::new(
                    Sgd::new(
                        p,
                        SgdConfig {
                            lr: 0.05,
                            ..Default::default()
                        },
                    )
                    .expect("valid lr"),
                )
            },
        },
        Strategy {
            name: "SGD+momentum (32)",
            batch: 32,
            make: |p| {
                Box::new(
                    Sgd::new(
                        p,
                        SgdConfig {
                            lr: 0.01,
                            momentum: 0.9,
                            ..Default::default()
                        },
                    )
                    .expect("valid"),
                )
            },
        },
        Strategy {
            name: "Adam (32)",
            batch: 32,
            make: |p| {
                Box::new(
                    Adam::new(
                        p,
                        AdamConfig {
                            lr: 1e-3,
                            ..Default::default()
                        },
                    )
                    .expect("valid lr"),
                )
            },
        },
        Strategy {
            name: "AdamW (32)",
            batch: 32,
            make: |p| {
                Box::new(
                    AdamW::new(
                        p,
                        AdamWConfig {
                            lr: 1e-3,
                            ..Default::default()
                        },
                    )
                    .expect("valid lr"),
                )
            },
        },
        Strategy {
            name: "RMSprop (32)",
            batch: 32,
            make: |p| {
                Box::new(
                    RMSprop::new(
                        p,
                        RMSpropConfig {
                            lr: 1e-3,
                            ..Default::default()
                        },
                    )
                    .expect("valid lr"),
                )
            },
        },
    ]
}

struct Run {
    curve: Vec<f32>,
    steps_to_threshold: Option<usize>,
    seconds: f64,
}

fn train(task: &Task, strategy: &Strategy) -> Result<Run, Box<dyn Error>> {
    tapegrad::manual_seed(0);
    let cols = task.data.features.shape()[1];
    let net = Sequential::new()
        .add(Linear::new(cols, task.hidden)?)
        .add(Relu)
        .add(Linear::new(task.hidden, task.outputs)?);
    let mut optimizer = (strategy.make)(net.parameters());
    let batch = if strategy.batch == 0 {
        task.data.len()
    } else {
        strategy.batch
    };
    let mut loader = DataLoader::new(task.data.clone(), batch)?.shuffle(1);
    let (mut steps, mut reached) = (0, None);
    let mut curve = vec![task.full_loss(&net)];
    let start = Instant::now();
    for _ in 0..task.epochs {
        for b in loader.epoch() {
            optimizer.zero_grad();
            task.loss(&net, &b.x, &b.y).backward();
            optimizer.step();
            steps += 1;
        }
        let loss = task.full_loss(&net);
        if reached.is_none() && loss <= task.threshold {
            reached = Some(steps);
        }
        curve.push(loss);
    }
    Ok(Run {
        curve,
        steps_to_threshold: reached,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn load_tasks() -> Result<Vec<Task>, Box<dyn Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/data/");
    let diabetes = TensorDataset::from_table(&read_csv(format!("{root}diabetes.csv"))?)?;
    let diabetes = TensorDataset::new(
        Standardizer::fit(&diabetes.features)?.apply(&diabetes.features)?,
        Standardizer::fit(&diabetes.targets)?.apply(&diabetes.targets)?,
    )?;
    let digits = TensorDataset::from_table(&read_csv(format!("{root}digits.csv"))?)?;
    let digits = TensorDataset::new(&digits.features / 16.0, digits.targets)?;
    Ok(vec![
        Task {
            name: "diabetes regression (MSE)",
            data: diabetes,
            classification: false,
            hidden: 5,
            outputs: 1,
            epochs: 100,
            threshold: 0.55,
        },
        Task {
            name: "digits classification (cross-entropy)",
            data: digits,
            classification: true,
            hidden: 128,
            outputs: 10,
            epochs: 20,
            threshold: 0.3,
        },
    ])
}

fn plot(
    tasks: &[Task],
    runs: &[Vec<(&str, Run)>],
    path: &std::path::Path,
) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    for ((task, task_runs), area) in tasks.iter().zip(runs).zip(root.split_evenly((1, 2))) {
        let losses = || task_runs.iter().flat_map(|(_, r)| r.curve.iter().copied());
        let (min, max) = (
            losses().fold(f32::INFINITY, f32::min),
            losses().fold(0.0f32, f32::max),
        );
        let mut chart = ChartBuilder::on(&area)
            .caption(task.name, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0..task.epochs, min * 0.95..max * 1.05)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("training loss")
            .draw()?;
        for (i, (name, run)) in task_runs.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    run.curve.iter().enumerate().map(|(e, &l)| (e, l)),
                    color.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let tasks = load_tasks()?;
    let mut all_runs = Vec::new();
    let mut summary = Vec::new();
    for task in &tasks {
        println!(
            "\n{} — {} epochs, threshold {}",
            task.name, task.epochs, task.threshold
        );
        println!(
            "{:<22} {:>11} {:>19} {:>9}",
            "strategy", "final loss", "steps to threshold", "seconds"
        );
        let mut task_runs = Vec::new();
        for strategy in strategies() {
            let run = train(task, &strategy)?;
            let steps = run
                .steps_to_threshold
                .map_or("never".to_string(), |s| s.to_string());
            let last = *run.curve.last().expect("at least the initial loss");
            println!(
                "{:<22} {:>11.4} {:>19} {:>9.3}",
                strategy.name, last, steps, run.seconds
            );
            summary.push((task.name, strategy.name, last));
            task_runs.push((strategy.name, run));
        }
        all_runs.push(task_runs);
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("compare_optimizers.svg");
    std::fs::create_dir_all(path.parent().expect("target/ has a parent"))?;
    plot(&tasks, &all_runs, &path)?;
    println!("\nloss curves written to {}", path.display());
    let best = |task: &str| {
        summary
            .iter()
            .filter(|(t, _, _)| *t == task)
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(_, s, l)| format!("{}:{l:.4}", s.replace(' ', "_")))
            .unwrap_or_default()
    };
    println!(
        "best_diabetes={} best_digits={} plot={}",
        best(tasks[0].name),
        best(tasks[1].name),
        path.display()
    );
    Ok(())
}
