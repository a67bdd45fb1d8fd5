//! The loops that move numbers between buffers and messages, in the f32 and
//! bfloat16 wire formats: each compiled for every ISA level and picked at
//! run time with the kernels' dispatch (`BIGDL_MAX_ISA` caps it), so that
//! encoding and summing keep up with the transport.
// The loops call their AVX2 / AVX-512 instances after checking the CPU.
#![allow(unsafe_code)]

use bigdl_kernels::cpu::{Isa, isa};

use crate::bf16::{decode, encode};

/// Defines each loop once and compiles it per ISA level (the compiler
/// vectorises each instance for its level); calls pick one at run time.
macro_rules! slice_kernels {
    ($($(#[$doc:meta])* $name:ident: ($($arg:ident: $ty:ty),*) $body:block)*) => {$(
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                fn avx512($($arg: $ty),*) { body($($arg),*) }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) { body($($arg),*) }
                match isa() {
                    // SAFETY: `isa()` reports only levels this CPU runs.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Scalar => {}
                }
            }
            body($($arg),*)
        }
    )*};
}

slice_kernels! {
    /// `xs` as little-endian f32 bytes into `out`.
    encode_f32: (xs: &[f32], out: &mut [u8]) {
        for (o, x) in out.chunks_exact_mut(4).zip(xs) {
            o.copy_from_slice(&x.to_le_bytes());
        }
    }
    /// `dst[i] = x_i` for the little-endian f32 numbers in `bytes`.
    decode_f32: (bytes: &[u8], dst: &mut [f32]) {
        for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
            *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
    /// `dst[i] += x_i` for the little-endian f32 numbers in `bytes`.
    decode_add_f32: (bytes: &[u8], dst: &mut [f32]) {
        for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
            *d += f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
    /// `xs` rounded to bfloat16, little-endian, into `out`.
    encode_bf16: (xs: &[f32], out: &mut [u8]) {
        for (o, &x) in out.chunks_exact_mut(2).zip(xs) {
            o.copy_from_slice(&encode(x).to_le_bytes());
        }
    }
    /// `dst[i] = x_i` for the bfloat16 numbers in `bytes`.
    decode_bf16: (bytes: &[u8], dst: &mut [f32]) {
        for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
            *d = decode(u16::from_le_bytes([c[0], c[1]]));
        }
    }
    /// `dst[i] += x_i` for the bfloat16 numbers in `bytes`.
    decode_add_bf16: (bytes: &[u8], dst: &mut [f32]) {
        for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
            *d += decode(u16::from_le_bytes([c[0], c[1]]));
        }
    }
}
