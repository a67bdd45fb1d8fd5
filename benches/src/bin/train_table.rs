//! Training and inference throughput of zoo models on synthetic data, as one
//! JSON line per measurement, for `benches/train_peers.py` (which measures
//! PyTorch and Keras on the same models in the same run).
//!
//! `train_table MODEL BATCH ITERATIONS [--intra-op]` with MODEL `lenet5` or
//! `resnet20`: trains ITERATIONS iterations (SGD; lr 0.05 for LeNet-5,
//! momentum 0.9 for ResNet-20) after two warm-up iterations, then runs
//! inference over the same number of batches; reports the median images/s of
//! each and the process's peak resident memory.

use std::sync::Arc;
use std::time::Instant;

use bigdl_nn::data::{DataLoader, ImageSet};
use bigdl_nn::train::{LocalOptimizer, Parallelism, Trigger};
use bigdl_nn::{Activity, ClassNLLCriterion, Criterion, Module, Sgd, manual_seed, models};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[global_allocator]
static ALLOC: bigdl_kernels::memory::HugePageAlloc = bigdl_kernels::memory::HugePageAlloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: train_table lenet5|resnet20 BATCH ITERATIONS [--intra-op]";
    let (name, batch, iters) = match &args[1..] {
        [m, b, i, ..] => (
            m.as_str(),
            b.parse::<usize>().expect(usage),
            i.parse::<usize>().expect(usage),
        ),
        _ => panic!("{usage}"),
    };
    let intra = args.iter().any(|a| a == "--intra-op");
    manual_seed(1);
    let (model, shape, optim): (Box<dyn Module>, [usize; 3], Sgd) = match name {
        "lenet5" => (
            Box::new(models::lenet5(10).unwrap()),
            [1, 28, 28],
            Sgd::new(0.05),
        ),
        "resnet20" => (
            Box::new(models::resnet_cifar(20, 10).unwrap()),
            [3, 32, 32],
            Sgd::new(0.1).with_momentum(0.9),
        ),
        _ => panic!("{usage}"),
    };
    let n = batch * (iters + 2);
    let len: usize = shape.iter().product();
    let set = Arc::new(ImageSet {
        pixels: (0..n * len).map(|i| (i * 7919 % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        shape,
        classes: 10,
    });
    let nll = || -> Box<dyn Criterion> { Box::new(ClassNLLCriterion::new()) };
    let data = DataLoader::new(set.clone(), batch);
    let mut opt = LocalOptimizer::new(model, &nll, Box::new(optim), data)
        .unwrap()
        .end_when(Trigger::MaxIteration(iters as u64 + 2));
    if intra {
        opt.set_parallelism(Parallelism::IntraOp, &nll).unwrap();
    }
    let mut times = Vec::new();
    opt.optimize(
        &mut |p| {
            if p.state.iteration > 2 {
                times.push(p.images_per_second)
            }
        },
        &mut |_| {},
    )
    .unwrap();
    let train = median(times);
    // Inference (`predict`): the trained model in evaluation mode, batch by
    // batch.
    let model = opt.model();
    model.evaluate();
    let loader = DataLoader::new(set, batch);
    let mut times = Vec::new();
    for (k, b) in loader.epoch(0, 0).enumerate() {
        let b = b.unwrap();
        let t0 = Instant::now();
        let y = model.predict(&Activity::from(b.input.clone())).unwrap();
        std::hint::black_box(y);
        if k >= 2 {
            times.push(b.len() as f64 / t0.elapsed().as_secs_f64());
        }
    }
    let infer = median(times);
    println!(
        "{{\"impl\": \"bigdl\", \"model\": \"{name}\", \"batch\": {batch}, \"train_ips\": {train:.1}, \"infer_ips\": {infer:.1}, \"peak_mib\": {:.1}}}",
        peak_rss_mib()
    );
}
