//! The differentiable ops, one module per family; each op's backward sits beside its
//! forward, and `tape::backward` dispatches to the family's `backward` by one `match`.

pub(crate) mod attention;
pub(crate) mod attention_gemm;
pub(crate) mod attention_kernels;
pub(crate) mod attention_packed;
pub(crate) mod attention_pair;
pub(crate) mod batchnorm;
pub(crate) mod binary;
pub(crate) mod conv;
pub(crate) mod conv_kernels;
pub(crate) mod conv_options;
pub(crate) mod conv_samples;
pub(crate) mod conv_winograd;
pub(crate) mod custom;
pub(crate) mod gemm;
pub(crate) mod layer_norm;
pub(crate) mod layout;
pub(crate) mod linalg;
pub(crate) mod loss;
pub(crate) mod mask;
pub(crate) mod movement;
pub(crate) mod operators;
pub(crate) mod planes;
pub(crate) mod pool2x2;
pub(crate) mod pooling;
pub(crate) mod pooling_kernels;
pub(crate) mod reduce;
pub(crate) mod unary;
pub(crate) mod vecmath;

#[cfg(test)]
mod gemm_bounds_tests;
