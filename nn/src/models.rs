//! The model zoo: BigDL's example models, built from this crate's layers.
//! They take batches (a leading batch dimension, also for a batch of one).

use crate::Result;
use crate::layers::*;
use crate::{CAddTable, Concat, ConcatTable, Identity, Module, Sequential};

/// LeNet-5 as BigDL defines it, for batches of 28 x 28 grey images
/// (`[N, 1, 28, 28]` or `[N, 784]`): Reshape(1, 28, 28), Conv(1 -> 6, 5x5), Tanh, MaxPool 2x2,
/// Tanh, Conv(6 -> 12, 5x5), MaxPool 2x2, Reshape(192), Linear(192, 100),
/// Tanh, Linear(100, classes), LogSoftMax.
pub fn lenet5(classes: usize) -> Result<Sequential> {
    Ok(Sequential::new()
        .add(Reshape::batched(&[1, 28, 28]))
        .add(SpatialConvolution::new(1, 6, (5, 5))?)
        .add(Tanh::new())
        .add(SpatialMaxPooling::new((2, 2), (2, 2)))
        .add(Tanh::new())
        .add(SpatialConvolution::new(6, 12, (5, 5))?)
        .add(SpatialMaxPooling::new((2, 2), (2, 2)))
        .add(Reshape::batched(&[12 * 4 * 4]))
        .add(Linear::new(12 * 4 * 4, 100)?)
        .add(Tanh::new())
        .add(Linear::new(100, classes)?)
        .add(LogSoftMax::new()))
}

fn conv_bn(cin: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Result<Sequential> {
    Ok(Sequential::new()
        .add(
            SpatialConvolution::new(cin, cout, (k, k))?
                .stride(stride, stride)
                .pad(pad, pad)
                .without_bias(),
        )
        .add(BatchNormalization::spatial(cout)?))
}

/// A basic residual block: two 3x3 conv + batch norm, added to the input
/// (through a 1x1 projection with batch norm where the shape changes).
fn basic_block(cin: usize, cout: usize, stride: usize) -> Result<Sequential> {
    let branch = conv_bn(cin, cout, 3, stride, 1)?
        .add(ReLU::new())
        .add(conv_bn(cout, cout, 3, 1, 1)?);
    let shortcut: Box<dyn Module> = if stride != 1 || cin != cout {
        Box::new(conv_bn(cin, cout, 1, stride, 0)?)
    } else {
        Box::new(Identity::new())
    };
    let mut both = ConcatTable::new().add(branch);
    both = both.add_boxed(shortcut);
    Ok(Sequential::new()
        .add(both)
        .add(CAddTable::new())
        .add(ReLU::new()))
}

/// ResNet for CIFAR-10 (He et al., section 4.2): `depth = 6n + 2` (20, 32,
/// 56, ...), three stages of `n` basic blocks with 16, 32 and 64 channels,
/// global average pooling and a linear classifier with LogSoftMax. The
/// shortcuts that change shape are 1x1 projections (BigDL's type B).
pub fn resnet_cifar(depth: usize, classes: usize) -> Result<Sequential> {
    if depth < 8 || !(depth - 2).is_multiple_of(6) {
        return Err(crate::error::invalid(
            "resnet_cifar",
            format!("depth {depth} is not 6n + 2"),
        ));
    }
    let n = (depth - 2) / 6;
    let mut m = Sequential::new()
        .add(conv_bn(3, 16, 3, 1, 1)?)
        .add(ReLU::new());
    let mut cin = 16;
    for (stage, cout) in [16, 32, 64].into_iter().enumerate() {
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            m = m.add(basic_block(cin, cout, stride)?);
            cin = cout;
        }
    }
    Ok(m.add(SpatialAveragePooling::global())
        .add(Reshape::batched(&[64]))
        .add(Linear::new(64, classes)?)
        .add(LogSoftMax::new()))
}

/// VGG-16 for 32 x 32 CIFAR images (BigDL's `VggForCifar10`): 13 3x3 conv
/// layers with batch norm and ReLU in five blocks (64, 128, 256, 512, 512),
/// max pooling after each, dropout, and a 512 -> 512 -> classes classifier.
pub fn vgg16_cifar(classes: usize) -> Result<Sequential> {
    let mut m = Sequential::new();
    let mut cin = 3;
    for (cout, convs) in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)] {
        for _ in 0..convs {
            m = m
                .add(SpatialConvolution::new(cin, cout, (3, 3))?.pad(1, 1))
                .add(BatchNormalization::spatial(cout)?)
                .add(ReLU::new());
            cin = cout;
        }
        m = m.add(SpatialMaxPooling::new((2, 2), (2, 2)));
    }
    Ok(m.add(Reshape::batched(&[512]))
        .add(Dropout::new(0.5)?)
        .add(Linear::new(512, 512)?)
        .add(BatchNormalization::new(512)?)
        .add(ReLU::new())
        .add(Dropout::new(0.5)?)
        .add(Linear::new(512, classes)?)
        .add(LogSoftMax::new()))
}

/// A fully connected autoencoder for MNIST (BigDL's example): 784 -> 32
/// (ReLU) -> 784 (Sigmoid); train it with `MSECriterion` (or BCE) against
/// its input.
pub fn autoencoder() -> Result<Sequential> {
    Ok(Sequential::new()
        .add(Reshape::batched(&[784]))
        .add(Linear::new(784, 32)?)
        .add(ReLU::new())
        .add(Linear::new(32, 784)?)
        .add(Sigmoid::new()))
}

/// An LSTM text classifier: token indices `[N, T]` -> embeddings `[N, T, E]`
/// -> LSTM `[N, T, H]` -> the last step -> Linear -> LogSoftMax.
pub fn lstm_classifier(
    vocabulary: usize,
    embedding: usize,
    hidden: usize,
    steps: usize,
    classes: usize,
) -> Result<Sequential> {
    Ok(Sequential::new()
        .add(LookupTable::new(vocabulary, embedding)?)
        .add(Recurrent::new(Cell::lstm(embedding, hidden)?))
        .add(Select::new(1, steps.max(1) - 1))
        .add(Linear::new(hidden, classes)?)
        .add(LogSoftMax::new()))
}

/// An Inception module: 1x1, 1x1 -> 3x3, 1x1 -> 5x5 and 3x3 max pool -> 1x1
/// branches joined along the channels.
fn inception(
    cin: usize,
    c1: usize,
    (r3, c3): (usize, usize),
    (r5, c5): (usize, usize),
    pool_proj: usize,
) -> Result<Concat> {
    let relu_conv = |a: usize, b: usize, k: usize| -> Result<Sequential> {
        Ok(Sequential::new()
            .add(SpatialConvolution::new(a, b, (k, k))?.pad(k / 2, k / 2))
            .add(ReLU::new()))
    };
    Ok(Concat::new(1)
        .add(relu_conv(cin, c1, 1)?)
        .add(relu_conv(cin, r3, 1)?.add(relu_conv(r3, c3, 3)?))
        .add(relu_conv(cin, r5, 1)?.add(relu_conv(r5, c5, 5)?))
        .add(
            Sequential::new()
                .add(SpatialMaxPooling::new((3, 3), (1, 1)).pad(1, 1))
                .add(relu_conv(cin, pool_proj, 1)?),
        ))
}

/// Inception-v1 (GoogLeNet, without the auxiliary classifiers) for 224 x 224
/// images, with LRN after the first convolutions as in BigDL's definition.
pub fn inception_v1(classes: usize) -> Result<Sequential> {
    let pool = || SpatialMaxPooling::new((3, 3), (2, 2)).ceil();
    Ok(Sequential::new()
        .add(
            SpatialConvolution::new(3, 64, (7, 7))?
                .stride(2, 2)
                .pad(3, 3),
        )
        .add(ReLU::new())
        .add(pool())
        .add(SpatialCrossMapLRN::new(5, 1e-4, 0.75, 1.0))
        .add(SpatialConvolution::new(64, 64, (1, 1))?)
        .add(ReLU::new())
        .add(SpatialConvolution::new(64, 192, (3, 3))?.pad(1, 1))
        .add(ReLU::new())
        .add(SpatialCrossMapLRN::new(5, 1e-4, 0.75, 1.0))
        .add(pool())
        .add(inception(192, 64, (96, 128), (16, 32), 32)?)
        .add(inception(256, 128, (128, 192), (32, 96), 64)?)
        .add(pool())
        .add(inception(480, 192, (96, 208), (16, 48), 64)?)
        .add(inception(512, 160, (112, 224), (24, 64), 64)?)
        .add(inception(512, 128, (128, 256), (24, 64), 64)?)
        .add(inception(512, 112, (144, 288), (32, 64), 64)?)
        .add(inception(528, 256, (160, 320), (32, 128), 128)?)
        .add(pool())
        .add(inception(832, 256, (160, 320), (32, 128), 128)?)
        .add(inception(832, 384, (192, 384), (48, 128), 128)?)
        .add(SpatialAveragePooling::global())
        .add(Reshape::batched(&[1024]))
        .add(Dropout::new(0.4)?)
        .add(Linear::new(1024, classes)?)
        .add(LogSoftMax::new()))
}

/// A bottleneck block: 1x1 reduce, 3x3 (strided), 1x1 expand, each with
/// batch norm, added to the (projected) input, ReLU.
fn bottleneck(cin: usize, mid: usize, stride: usize) -> Result<Sequential> {
    let cout = mid * 4;
    let branch = conv_bn(cin, mid, 1, 1, 0)?
        .add(ReLU::new())
        .add(conv_bn(mid, mid, 3, stride, 1)?)
        .add(ReLU::new())
        .add(conv_bn(mid, cout, 1, 1, 0)?);
    let shortcut: Box<dyn Module> = if stride != 1 || cin != cout {
        Box::new(conv_bn(cin, cout, 1, stride, 0)?)
    } else {
        Box::new(Identity::new())
    };
    Ok(Sequential::new()
        .add(ConcatTable::new().add(branch).add_boxed(shortcut))
        .add(CAddTable::new())
        .add(ReLU::new()))
}

/// ResNet-50 for 224 x 224 images: a 7x7 stem, stages of 3, 4, 6 and 3
/// bottleneck blocks, global average pooling, Linear, LogSoftMax.
pub fn resnet50(classes: usize) -> Result<Sequential> {
    let mut m = Sequential::new()
        .add(conv_bn(3, 64, 7, 2, 3)?)
        .add(ReLU::new())
        .add(SpatialMaxPooling::new((3, 3), (2, 2)).pad(1, 1));
    let mut cin = 64;
    for (stage, (mid, blocks)) in [(64, 3), (128, 4), (256, 6), (512, 3)]
        .into_iter()
        .enumerate()
    {
        for b in 0..blocks {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            m = m.add(bottleneck(cin, mid, stride)?);
            cin = mid * 4;
        }
    }
    Ok(m.add(SpatialAveragePooling::global())
        .add(Reshape::batched(&[2048]))
        .add(Linear::new(2048, classes)?)
        .add(LogSoftMax::new()))
}
