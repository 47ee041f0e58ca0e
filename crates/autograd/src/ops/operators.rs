//! Operator overloading: `&a + &b`, `&a * 2.0`, `1.0 - &a`, `-&a`.
//!
//! Operators take references so that tensors stay usable afterwards; each one is the
//! panicking method of the same name, so a shape mismatch panics with the op and both
//! shapes.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::tensor::Tensor;

macro_rules! tensor_tensor {
    ($trait:ident, $method:ident) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$method(self, rhs)
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$method(&self, &rhs)
            }
        }
    };
}

tensor_tensor!(Add, add);
tensor_tensor!(Sub, sub);
tensor_tensor!(Mul, mul);
tensor_tensor!(Div, div);

impl Add<f32> for &Tensor {
    type Output = Tensor;
    fn add(self, s: f32) -> Tensor {
        self.add_scalar(s)
    }
}
impl Sub<f32> for &Tensor {
    type Output = Tensor;
    fn sub(self, s: f32) -> Tensor {
        self.sub_scalar(s)
    }
}
impl Mul<f32> for &Tensor {
    type Output = Tensor;
    fn mul(self, s: f32) -> Tensor {
        self.mul_scalar(s)
    }
}
impl Div<f32> for &Tensor {
    type Output = Tensor;
    fn div(self, s: f32) -> Tensor {
        self.div_scalar(s)
    }
}
impl Add<&Tensor> for f32 {
    type Output = Tensor;
    fn add(self, t: &Tensor) -> Tensor {
        t.add_scalar(self)
    }
}
impl Sub<&Tensor> for f32 {
    type Output = Tensor;
    fn sub(self, t: &Tensor) -> Tensor {
        t.rsub_scalar(self)
    }
}
impl Mul<&Tensor> for f32 {
    type Output = Tensor;
    fn mul(self, t: &Tensor) -> Tensor {
        t.mul_scalar(self)
    }
}
impl Div<&Tensor> for f32 {
    type Output = Tensor;
    fn div(self, t: &Tensor) -> Tensor {
        t.rdiv_scalar(self)
    }
}
impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}
impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
