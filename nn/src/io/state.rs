//! Non-parameter state (running statistics, random stream positions) in the
//! native model format and in checkpoints: a count, then per item a tag (0: a
//! `BDLT` tensor of floats, 1: a `u64`).

use bigdl_tensor::Tensor;

use crate::error::Result;
use crate::module::{Module, StateMut};

/// One state item: `Ok(counter)` or `Err(floats)`.
pub(crate) type StateItem = std::result::Result<u64, Vec<f32>>;

/// Appends the state of `models`, in turn, to `out`.
pub(crate) fn encode_state(models: &mut [&mut dyn Module], out: &mut Vec<u8>) -> Result<()> {
    let mut items: Vec<Vec<u8>> = Vec::new();
    let mut err = None;
    for model in models.iter_mut() {
        model.visit_state(&mut |s| {
            let mut item = Vec::new();
            match s {
                StateMut::F32(v) => {
                    item.push(0);
                    match Tensor::from_vec(v.clone(), &[v.len()]) {
                        Ok(t) => t.encode(&mut item),
                        Err(e) => err = Some(e),
                    }
                }
                StateMut::U64(v) => {
                    item.push(1);
                    item.extend(v.to_le_bytes());
                }
            }
            items.push(item);
        });
    }
    if let Some(e) = err {
        return Err(e.into());
    }
    out.extend((items.len() as u64).to_le_bytes());
    items.iter().for_each(|i| out.extend(i));
    Ok(())
}

/// Reads state items from `bytes` at `*at` (advancing it); `bad` makes the
/// error for malformed input.
pub(crate) fn decode_state(
    bytes: &[u8],
    at: &mut usize,
    bad: &dyn Fn(String) -> crate::NnError,
) -> Result<Vec<StateItem>> {
    let u64_at = |at: &mut usize| -> Result<u64> {
        let b = bytes
            .get(*at..*at + 8)
            .ok_or_else(|| bad("truncated state".into()))?;
        *at += 8;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let count = u64_at(at)?;
    let mut state = Vec::new();
    for _ in 0..count {
        let tag = *bytes
            .get(*at)
            .ok_or_else(|| bad("truncated state".into()))?;
        *at += 1;
        state.push(match tag {
            0 => {
                let (t, n) =
                    Tensor::<f32>::decode(&bytes[*at..]).map_err(|e| bad(e.to_string()))?;
                *at += n;
                Err(t.to_vec())
            }
            1 => Ok(u64_at(at)?),
            t => return Err(bad(format!("unknown state tag {t}"))),
        });
    }
    Ok(state)
}

/// The shape of the models' state: `Some(len)` per float item, `None` per
/// counter.
pub(crate) fn state_shape(models: &mut [&mut dyn Module]) -> Vec<Option<usize>> {
    let mut expected = Vec::new();
    for model in models.iter_mut() {
        model.visit_state(&mut |s| {
            expected.push(match s {
                StateMut::F32(v) => Some(v.len()),
                StateMut::U64(_) => None,
            })
        });
    }
    expected
}

/// Whether `state` has the shape `expected`.
pub(crate) fn state_fits(expected: &[Option<usize>], state: &[StateItem]) -> bool {
    expected.len() == state.len()
        && expected.iter().zip(state).all(|(e, s)| match (e, s) {
            (Some(n), Err(v)) => *n == v.len(),
            (None, Ok(_)) => true,
            _ => false,
        })
}

/// Writes `state` (checked with [`state_fits`]) into `models`, in turn.
pub(crate) fn apply_state(models: &mut [&mut dyn Module], state: Vec<StateItem>) {
    let mut it = state.into_iter();
    for model in models.iter_mut() {
        model.visit_state(&mut |s| match (s, it.next()) {
            (StateMut::F32(v), Some(Err(t))) => *v = t,
            (StateMut::U64(v), Some(Ok(x))) => *v = x,
            _ => unreachable!("checked before"),
        });
    }
}
