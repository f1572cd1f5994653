//! Bar charts as inline SVG, drawn by plotters (its SVG backend: text stays text, so the page is
//! small, sharp when printed and searchable).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const BAR: RGBColor = RGBColor(0x00, 0x5e, 0xb8); // NHS blue
const INK: RGBColor = RGBColor(0x23, 0x2f, 0x3a);

/// A vertical bar chart of `values` labelled by `labels`, as an `<svg>` element.
pub fn bars(title: &str, labels: &[String], values: &[u64]) -> Result<String, String> {
    let n = labels.len().max(1) as u32;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let top = max + max / 8 + 1;
    let width = (120 + 60 * n).clamp(360, 900);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15).into_font().color(&INK))
            .margin(10)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d((0u32..n).into_segmented(), 0u64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(0xe8, 0xed, 0xee))
            .x_labels(labels.len().max(1))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 12).into_font().color(&INK))
            .axis_style(INK)
            .draw()
            .map_err(|e| e.to_string())?;
        // Rectangles in value order, not plotters' Histogram (which sums through a hash map and
        // draws in a different order each time): the same run gives the same bytes.
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), 0), (SegmentValue::Exact(i + 1), *v)],
                    BAR.filled(),
                );
                bar.set_margin(0, 0, 6, 6);
                bar
            }))
            .map_err(|e| e.to_string())?;
        // The value above each bar: a chart people read, not only compare.
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                Text::new(
                    v.to_string(),
                    (SegmentValue::CenterOf(i as u32), *v + max / 40 + 1),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&INK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
