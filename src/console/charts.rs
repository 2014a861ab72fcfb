//! Bar charts drawn as inline SVG on the server: no script, no chart library. Colours come
//! from the stylesheet (classes), since the Content-Security-Policy forbids inline style.
//! Every text is escaped here, so the markup is safe to embed as it is.

use std::fmt::{self, Write};

/// Finished SVG markup, embedded in pages without escaping.
pub struct Svg(String);

impl fmt::Display for Svg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl askama::filters::HtmlSafe for Svg {}

/// One bar: its axis label (shown when `labelled`), its value, and how the value reads.
pub struct Bar {
    pub label: String,
    pub value: i64,
    pub shown: String,
    pub labelled: bool,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
/// Room at each side for the first and last labels, centred under their bars.
const LEFT: f64 = 30.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 26.0;

/// A bar chart. `summary` is what a screen reader hears for the whole chart; `max_shown`
/// labels the top of the scale.
pub fn bars(id: &str, title: &str, summary: &str, bars: &[Bar], max_shown: &str) -> Svg {
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1) as f64;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - 2.0 * LEFT) / bars.len().max(1) as f64;
    let bar_w = (slot * 0.72).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-title {id}-desc" preserveAspectRatio="xMidYMid meet"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape(title),
        escape(summary)
    );
    let base = TOP + plot_h;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{base}" x2="{}" y2="{base}"/><line class="grid" x1="{LEFT}" y1="{TOP}" x2="{}" y2="{TOP}"/><text class="scale" x="{LEFT}" y="{}">{}</text>"#,
        WIDTH - LEFT,
        WIDTH - LEFT,
        TOP - 6.0,
        escape(max_shown)
    );
    for (i, bar) in bars.iter().enumerate() {
        let h = (bar.value.max(0) as f64 / max * plot_h).round();
        let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
        let y = base - h;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}"><title>{}: {}</title></rect>"#,
            escape(&bar.label),
            escape(&bar.shown)
        );
        if bar.labelled {
            let _ = write!(
                svg,
                r#"<text class="tick" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x + bar_w / 2.0,
                HEIGHT - 8.0,
                escape(&bar.label)
            );
        }
    }
    svg.push_str("</svg>");
    Svg(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_bars_scale() {
        let svg = bars(
            "c",
            "<b>",
            "s & t",
            &[
                Bar {
                    label: "a\"".into(),
                    value: 2,
                    shown: "2".into(),
                    labelled: true,
                },
                Bar {
                    label: "b".into(),
                    value: 4,
                    shown: "4".into(),
                    labelled: false,
                },
            ],
            "4",
        )
        .to_string();
        assert!(svg.contains("&lt;b&gt;") && svg.contains("s &amp; t") && svg.contains("a&quot;"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains(r#"height="152.0""#), "{svg}");
        assert!(svg.contains(r#"height="76.0""#), "{svg}");
    }
}
