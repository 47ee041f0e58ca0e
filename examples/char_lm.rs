//! A character-level GPT trained on `data/shakespeare.txt` with the large-model recipe:
//! AdamW with two parameter groups (weight decay on weight matrices only), linear
//! warm-up then cosine decay of the learning rate, gradient clipping at norm 1.0,
//! optional gradient accumulation, dropout in training mode only. The last 10% of the
//! text is the validation split.
//!
//! Run: `cargo run --release --example char_lm` (defaults: 4 layers, 4 heads, width 128,
//! context 64, batch 16, 2500 steps). `--help` lists the flags. It prints a progress line
//! every few seconds and the validation loss every `--eval-every` steps, then 300
//! generated characters, saves a checkpoint (`--out`) that `--resume` continues from to
//! the bit, and ends with `val_loss=`.

use std::error::Error;
use std::time::Instant;

use tapegrad::autograd::rand::{rngs::StdRng, SeedableRng};
use tapegrad::autograd::{pooled_bytes, set_num_threads};
use tapegrad::data::{split_tail, CharVocab, TokenWindows};
use tapegrad::io::Checkpoint;
use tapegrad::losses::CrossEntropyLoss;
use tapegrad::nn::{Gpt, GptConfig, Module};
use tapegrad::optim::{clip_grad_norm, AdamW, AdamWConfig, Optimizer, ParamGroup};
use tapegrad::{manual_seed, no_grad};

/// Everything a run is configured by; the flags of the same names set it.
#[derive(Debug, Clone)]
pub struct Args {
    pub layers: usize,
    pub heads: usize,
    pub width: usize,
    pub context: usize,
    pub batch: usize,
    pub steps: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: u64,
    pub weight_decay: f64,
    pub accum: u64,
    pub dropout: f32,
    pub threads: usize,
    pub seed: u64,
    pub eval_every: u64,
    pub eval_batches: usize,
    /// Windows of the final validation loss (0: every non-overlapping window).
    pub final_eval_windows: usize,
    pub generate: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub out: String,
    pub resume: Option<String>,
    /// Stop (and save) after this many steps, as if interrupted; the schedule still
    /// runs to `steps`.
    pub stop_after: Option<u64>,
    pub data: String,
    pub progress_secs: f64,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            layers: 4,
            heads: 4,
            width: 128,
            context: 64,
            batch: 16,
            steps: 2500,
            lr: 2e-3,
            min_lr: 2e-4,
            warmup: 100,
            weight_decay: 0.1,
            accum: 1,
            dropout: 0.0,
            threads: 2,
            seed: 1337,
            eval_every: 250,
            eval_batches: 8,
            final_eval_windows: 0,
            generate: 300,
            temperature: 0.8,
            top_k: 10,
            out: "target/char_lm.ckpt".to_string(),
            resume: None,
            stop_after: None,
            data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/shakespeare.txt").to_string(),
            progress_secs: 5.0,
        }
    }
}

const HELP: &str = "char_lm: a character-level GPT on data/shakespeare.txt
flags (default):
  --layers N (4)  --heads N (4)  --width N (128)  --context N (64)  --batch N (16)
  --steps N (2500)  --lr X (2e-3, peak)  --min-lr X (2e-4)  --warmup N (100)
  --weight-decay X (0.1)  --accum N (1, micro-batches per step)  --dropout P (0)
  --threads N (2)  --seed N (1337)  --eval-every N (250)  --eval-batches N (8)
  --final-eval-windows N (0 = the whole validation split)
  --generate N (300)  --temperature X (0.8)  --top-k N (10)
  --out PATH (target/char_lm.ckpt)  --resume PATH  --stop-after N  --data PATH
  --progress-secs X (5)";

impl Args {
    /// Parses `--flag value` pairs over the defaults.
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let mut a = Args::default();
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Err(HELP.to_string());
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{HELP}"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
            macro_rules! set {
                ($field:expr) => {
                    $field = value.parse().map_err(|e| bad(&e))?
                };
            }
            match flag.as_str() {
                "--layers" => set!(a.layers),
                "--heads" => set!(a.heads),
                "--width" => set!(a.width),
                "--context" => set!(a.context),
                "--batch" => set!(a.batch),
                "--steps" => set!(a.steps),
                "--lr" => set!(a.lr),
                "--min-lr" => set!(a.min_lr),
                "--warmup" => set!(a.warmup),
                "--weight-decay" => set!(a.weight_decay),
                "--accum" => set!(a.accum),
                "--dropout" => set!(a.dropout),
                "--threads" => set!(a.threads),
                "--seed" => set!(a.seed),
                "--eval-every" => set!(a.eval_every),
                "--eval-batches" => set!(a.eval_batches),
                "--final-eval-windows" => set!(a.final_eval_windows),
                "--generate" => set!(a.generate),
                "--temperature" => set!(a.temperature),
                "--top-k" => set!(a.top_k),
                "--out" => a.out = value.clone(),
                "--resume" => a.resume = Some(value.clone()),
                "--stop-after" => a.stop_after = Some(value.parse().map_err(|e| bad(&e))?),
                "--data" => a.data = value.clone(),
                "--progress-secs" => set!(a.progress_secs),
                _ => return Err(format!("unknown flag {flag}\n{HELP}")),
            }
        }
        if a.accum == 0 || a.batch == 0 || a.steps == 0 {
            return Err("--accum, --batch and --steps have to be at least 1".to_string());
        }
        Ok(a)
    }
}

/// The learning rate of step `step` (0-based): linear warm-up from lr/warmup to lr over
/// `warmup` steps, then cosine decay from lr to `min_lr` at the last step. A pure
/// function of the step, so a resumed run needs no scheduler state.
pub fn lr_at(a: &Args, step: u64) -> f64 {
    if step < a.warmup {
        return a.lr * (step + 1) as f64 / a.warmup as f64;
    }
    let span = a.steps.saturating_sub(a.warmup).max(1) as f64;
    let progress = ((step - a.warmup) as f64 / span).min(1.0);
    a.min_lr + 0.5 * (a.lr - a.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// What a run ends with.
pub struct Summary {
    /// Validation loss (nats per character) at the end.
    pub val_loss: f32,
    /// Train loss of each step this process ran, with its step number.
    pub losses: Vec<(u64, f32)>,
    /// Every parameter's bits at the end, in state-dict order.
    pub param_bits: Vec<u32>,
    /// The generated text.
    pub sample: String,
}

/// Mean cross-entropy over the windows starting at `starts`, in eval mode, batch by batch.
fn eval_loss(model: &Gpt, windows: &TokenWindows, starts: &[usize], batch: usize) -> f32 {
    let ce = CrossEntropyLoss::new();
    let vocab = model.config().vocab_size;
    let (mut total, mut count) = (0.0f64, 0usize);
    for chunk in starts.chunks(batch) {
        let b = windows.batch_at(chunk).expect("starts in range");
        let loss = no_grad(|| {
            let logits = model
                .try_forward_ids(&b.inputs, b.batch, b.context)
                .expect("ids checked by the vocabulary");
            ce.forward(&logits.reshape(&[b.inputs.len(), vocab]), &b.targets_i64())
                .item()
        });
        total += f64::from(loss) * b.inputs.len() as f64;
        count += b.inputs.len();
    }
    (total / count as f64) as f32
}

fn spread(n: usize, windows: &TokenWindows) -> Vec<usize> {
    let last = windows.num_starts();
    (0..n).map(|i| i * last / n.max(1)).collect()
}

fn human(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}m{:02}s", s / 60, s % 60)
}

/// Trains as configured, printing progress; returns what it ended with.
pub fn run(a: &Args) -> Result<Summary, Box<dyn Error>> {
    set_num_threads(a.threads);
    let text = std::fs::read_to_string(&a.data).map_err(|e| format!("{}: {e}", a.data))?;
    let vocab = CharVocab::from_text(&text);
    let (train_ids, val_ids) = split_tail(&vocab.encode(&text)?, 0.1)?;
    let train = TokenWindows::new(train_ids, a.context)?;
    let val = TokenWindows::new(val_ids, a.context)?;
    println!(
        "char_lm: {} characters, vocabulary {}, {} train / {} validation tokens",
        text.chars().count(),
        vocab.len(),
        train.tokens().len(),
        val.tokens().len()
    );

    manual_seed(a.seed);
    let config = GptConfig {
        vocab_size: vocab.len(),
        context: a.context,
        n_layer: a.layers,
        n_head: a.heads,
        n_embd: a.width,
        dropout: a.dropout,
    };
    let mut model = Gpt::new(config)?;
    let (decay, no_decay) = model.decay_groups();
    let group = |weight_decay| AdamWConfig {
        lr: a.lr,
        betas: (0.9, 0.99),
        weight_decay,
        ..Default::default()
    };
    let mut optimizer = AdamW::with_groups(vec![
        ParamGroup::new(decay, group(a.weight_decay)),
        ParamGroup::new(no_decay, group(0.0)),
    ])?;
    let params = model.parameters();
    println!(
        "model: {} layers, {} heads, width {}, context {}: {} parameters; batch {} x {} \
         accumulation, {} steps, {} threads",
        a.layers,
        a.heads,
        a.width,
        a.context,
        model.num_parameters(),
        a.batch,
        a.accum,
        a.steps,
        a.threads
    );

    let mut start = 0;
    if let Some(path) = &a.resume {
        let ckpt = Checkpoint::load(path)?;
        ckpt.restore_model(&model)?;
        ckpt.restore_optimizer(&mut optimizer)?;
        start = ckpt.step;
        println!("resumed from {path} at step {start}");
    }
    let end = a.stop_after.unwrap_or(a.steps).min(a.steps);
    let eval_starts = spread(a.eval_batches * a.batch, &val);
    let ce = CrossEntropyLoss::new();
    let tokens_per_step = (a.batch * a.context) as u64 * a.accum;
    let mut losses = Vec::new();
    let t0 = Instant::now();
    let mut last_print = t0;
    let mut pooled = Vec::new();
    for step in start..end {
        optimizer.set_lr(lr_at(a, step));
        optimizer.zero_grad();
        let mut step_loss = 0.0;
        for micro in 0..a.accum {
            let b = train.random_batch(a.batch, a.seed, step * a.accum + micro);
            let logits = model.try_forward_ids(&b.inputs, b.batch, b.context)?;
            let loss = ce.try_forward(
                &logits.reshape(&[b.inputs.len(), config.vocab_size]),
                &b.targets_i64(),
            )?;
            // Each micro-batch's loss is divided by their number, so the accumulated
            // gradient is that of one batch `accum` times as large.
            let loss = loss.mul_scalar(1.0 / a.accum as f32);
            loss.backward();
            step_loss += loss.item();
        }
        clip_grad_norm(&params, 1.0, 2.0);
        optimizer.step();
        losses.push((step, step_loss));

        let done = step + 1;
        let now = Instant::now();
        if now.duration_since(last_print).as_secs_f64() >= a.progress_secs || done == end {
            let elapsed = now.duration_since(t0).as_secs_f64();
            let ran = done - start;
            let rate = (ran * tokens_per_step) as f64 / elapsed;
            let left = elapsed / ran as f64 * (end - done) as f64;
            println!(
                "step {done:5}/{}  loss {step_loss:.4}  lr {:.2e}  {rate:.0} tok/s  \
                 {} left  pooled {:.1} MB",
                a.steps,
                lr_at(a, step),
                human(left),
                pooled_bytes() as f64 / 1e6
            );
            last_print = now;
        }
        pooled.push(pooled_bytes());
        if done % a.eval_every == 0 && done != a.steps {
            model.eval();
            let v = eval_loss(&model, &val, &eval_starts, a.batch);
            model.train();
            println!(
                "step {done:5}  val loss {v:.4} ({} windows)",
                eval_starts.len()
            );
        }
    }
    if let (Some(first), Some(max)) = (pooled.get(pooled.len().min(10) - 1), pooled.iter().max()) {
        println!(
            "pooled bytes: {:.1} MB after 10 steps, {:.1} MB at most, {:.1} MB at the end",
            *first as f64 / 1e6,
            *max as f64 / 1e6,
            *pooled.last().unwrap_or(&0) as f64 / 1e6
        );
    }
    // The checkpoint is written before evaluation and sampling, which draw from no
    // generator the training uses; a resumed run continues from exactly here.
    Checkpoint::new(&model)
        .with_optimizer(&optimizer)
        .with_counters(0, end)
        .save(&a.out)?;
    println!("saved {} at step {end}", a.out);

    model.eval();
    let final_starts = if a.final_eval_windows == 0 {
        val.covering_starts()
    } else {
        spread(a.final_eval_windows, &val)
    };
    let val_loss = eval_loss(&model, &val, &final_starts, a.batch);
    println!(
        "validation: {} windows of {} ({} characters) in {:.1} s of training",
        final_starts.len(),
        a.context,
        final_starts.len() * a.context,
        t0.elapsed().as_secs_f64()
    );
    let mut rng = StdRng::seed_from_u64(a.seed);
    let prompt = vocab.encode("\n")?;
    let top_k = (a.top_k > 0).then_some(a.top_k);
    let ids = model.generate(&prompt, a.generate, a.temperature, top_k, &mut rng)?;
    let sample = vocab.decode(&ids[prompt.len()..])?;
    println!(
        "---- sample (temperature {}, top-k {}) ----",
        a.temperature, a.top_k
    );
    println!("{sample}");
    println!("----");
    let param_bits = params
        .iter()
        .flat_map(|p| p.to_vec().into_iter().map(f32::to_bits))
        .collect();
    println!("val_loss={val_loss:.4}");
    Ok(Summary {
        val_loss,
        losses,
        param_bits,
        sample,
    })
}

#[allow(dead_code)] // tests include this file as a module and call `run`
fn main() -> Result<(), Box<dyn Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    run(&args).map(|_| ())
}
