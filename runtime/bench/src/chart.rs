//! The throughput chart of `compare`: messages per second by batch size,
//! one line per system, drawn with plotters into an RGB buffer and written
//! as PNG. Text needs a TrueType font, read from the system (DejaVu Sans
//! or Liberation Sans, or the file `WEIR_BENCH_FONT` names).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::BenchError;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 560;

/// Font files tried in order after `WEIR_BENCH_FONT`.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
];

/// One line of the chart.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) name: String,
    /// (batch size, messages per second).
    pub(crate) points: Vec<(u32, f64)>,
}

/// Registers a system font with plotters, once per process.
fn font() -> Result<(), BenchError> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("WEIR_BENCH_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONTS.iter().map(PathBuf::from))
            .collect();
        for path in &candidates {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no TrueType font found (tried {}); install fonts-dejavu-core or set WEIR_BENCH_FONT",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
    .clone()
    .map_err(BenchError::Chart)
}

/// Draws `series` into a PNG at `path`.
pub(crate) fn draw(path: &Path, title: &str, series: &[Series]) -> Result<(), BenchError> {
    font()?;
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    render(&mut pixels, title, series).map_err(|e| BenchError::Chart(e.to_string()))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(BenchError::io(parent))?;
    }
    let file = std::fs::File::create(path).map_err(BenchError::io(path))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| BenchError::Chart(format!("{}: {e}", path.display())))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| BenchError::Chart(format!("{}: {e}", path.display())))?;
    writer
        .finish()
        .map_err(|e| BenchError::Chart(format!("{}: {e}", path.display())))?;
    Ok(())
}

fn render(
    pixels: &mut [u8],
    title: &str,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(pixels, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(1000)
        .max(10);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(90)
        .build_cartesian_2d((1f64..f64::from(x_max) * 1.5).log_scale(), 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("batch size (weir: messages per produce batch; NATS: async publishes in flight)")
        .y_desc("messages per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1000.0 {
                format!("{:.0}k", y / 1000.0)
            } else {
                format!("{y:.0}")
            }
        })
        .label_style(("sans-serif", 15))
        .draw()?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
    ];
    for (i, s) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (f64::from(x), y)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png() {
        if font().is_err() {
            eprintln!("skipped: no TrueType font on this machine");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/chart.png");
        let series = vec![
            Series {
                name: "weir".into(),
                points: vec![
                    (1, 20_000.0),
                    (10, 90_000.0),
                    (100, 300_000.0),
                    (1000, 400_000.0),
                ],
            },
            Series {
                name: "NATS".into(),
                points: vec![(1, 10_000.0), (1000, 150_000.0)],
            },
        ];
        draw(&path, "test", &series).expect("draws");
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
