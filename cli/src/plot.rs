//! `bigdl plot --summary DIR [--output FILE]`: a PNG of the training loss and
//! the validation scores from a `--summary` directory's CSV files.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

/// Options of `bigdl plot`.
#[derive(Args)]
pub struct PlotArgs {
    /// The directory `bigdl train --summary` wrote.
    #[arg(long)]
    summary: PathBuf,
    /// The PNG to write (default: SUMMARY/curves.png).
    #[arg(long)]
    output: Option<PathBuf>,
}

const W: usize = 900;
const PANEL_H: usize = 330;

/// A 3 x 5 pixel font: each glyph is 5 rows of 3 bits (MSB left).
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        ':' => [0, 2, 0, 2, 0],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [7, 4, 4, 4, 7],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [7, 4, 5, 5, 7],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 7],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [7, 5, 5, 5, 7],
        'P' => [7, 5, 7, 4, 4],
        'Q' => [7, 5, 5, 7, 1],
        'R' => [7, 5, 6, 5, 5],
        'S' => [7, 4, 7, 1, 7],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        _ => [0; 5],
    }
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&rgb);
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), rgb: [u8; 3]) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            self.set(x.round() as i64, y.round() as i64, rgb);
            self.set(x.round() as i64, y.round() as i64 + 1, rgb);
        }
    }

    /// Text at `(x, y)` (top left), glyphs scaled by 2.
    fn text(&mut self, x: i64, y: i64, s: &str, rgb: [u8; 3]) {
        for (k, c) in s.chars().enumerate() {
            let g = glyph(c);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 1 {
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(
                                x + k as i64 * 8 + col * 2 + dx,
                                y + row as i64 * 2 + dy,
                                rgb,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Columns `x` and `y` (by header name) of a CSV file, rows with `filter`
/// passing on column `key` (if given).
fn series(
    path: &Path,
    x: &str,
    y: &str,
    filter: Option<(&str, &str)>,
) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n);
    let (Some(xi), Some(yi)) = (col(x), col(y)) else {
        bail!("{}: no columns {x} and {y}", path.display());
    };
    let fk = filter.and_then(|(k, v)| col(k).map(|i| (i, v)));
    Ok(lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if let Some((i, v)) = fk
                && f.get(i) != Some(&v)
            {
                return None;
            }
            Some((f.get(xi)?.parse().ok()?, f.get(yi)?.parse().ok()?))
        })
        .filter(|(a, b): &(f64, f64)| a.is_finite() && b.is_finite())
        .collect())
}

fn panel(c: &mut Canvas, top: usize, title: &str, pts: &[(f64, f64)], rgb: [u8; 3]) {
    let (l, r, t, b) = (
        70.0,
        (W - 20) as f64,
        (top + 40) as f64,
        (top + PANEL_H - 30) as f64,
    );
    c.text(l as i64, top as i64 + 12, title, [0, 0, 0]);
    c.line((l, t), (l, b), [0, 0, 0]);
    c.line((l, b), (r, b), [0, 0, 0]);
    if pts.is_empty() {
        c.text(
            l as i64 + 20,
            ((t + b) / 2.0) as i64,
            "NO DATA",
            [120, 120, 120],
        );
        return;
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (y0, y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    let (x1, y1) = (
        if x1 > x0 { x1 } else { x0 + 1.0 },
        if y1 > y0 { y1 } else { y0 + 1.0 },
    );
    let map = |p: &(f64, f64)| {
        (
            l + (p.0 - x0) / (x1 - x0) * (r - l),
            b - (p.1 - y0) / (y1 - y0) * (b - t),
        )
    };
    for w in pts.windows(2) {
        c.line(map(&w[0]), map(&w[1]), rgb);
    }
    if pts.len() == 1 {
        let (x, y) = map(&pts[0]);
        c.line((x - 3.0, y), (x + 3.0, y), rgb);
    }
    c.text(4, t as i64, &format!("{y1:.4}"), [0, 0, 0]);
    c.text(4, b as i64 - 10, &format!("{y0:.4}"), [0, 0, 0]);
    c.text(l as i64, b as i64 + 8, &format!("{x0:.0}"), [0, 0, 0]);
    c.text(
        r as i64 - 90,
        b as i64 + 8,
        &format!("{x1:.0} ITER"),
        [0, 0, 0],
    );
}

pub fn run(a: PlotArgs) -> anyhow::Result<()> {
    let loss = series(&a.summary.join("train.csv"), "iteration", "loss", None)?;
    let val = a.summary.join("validation.csv");
    let acc = if val.exists() {
        series(&val, "iteration", "value", Some(("method", "Top1Accuracy")))?
    } else {
        Vec::new()
    };
    if loss.is_empty() {
        bail!(
            "{}: no training rows to plot",
            a.summary.join("train.csv").display()
        );
    }
    let h = 2 * PANEL_H;
    let mut c = Canvas {
        w: W,
        h,
        px: vec![255; W * h * 3],
    };
    panel(&mut c, 0, "TRAINING LOSS", &loss, [31, 119, 180]);
    panel(
        &mut c,
        PANEL_H,
        "VALIDATION TOP-1 ACCURACY",
        &acc,
        [214, 39, 40],
    );
    let out = a.output.unwrap_or_else(|| a.summary.join("curves.png"));
    let file = fs::File::create(&out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&c.px)?;
    println!("wrote {}", out.display());
    Ok(())
}
