//! `lefi admin orders coverage --benefit SJP [--svg FILE]`: how complete the register is for the
//! recent months of one benefit, which months may be ordered (from 95 %), and the completion
//! curve as a small hand-written SVG plot.

use std::fmt::Write as _;
use std::path::Path;

use super::AdminClient;
use crate::commands::output::{print_message, yes_no};
use crate::grpc::pb::lefi::admin::v1 as admin_pb;

/// The share from which a month may be ordered (the server decides; drawn as a line here).
const ORDERABLE_FROM: f64 = 0.95;

pub(super) async fn run(
    client: &mut AdminClient,
    benefit: &str,
    svg: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let coverage = client
        .get_coverage(admin_pb::GetCoverageRequest {
            benefit_type: benefit.to_string(),
        })
        .await?
        .into_inner();
    if let Some(path) = svg {
        let plot = completion_svg(&coverage.benefit_type, &coverage.curve, coverage.mature_months);
        std::fs::write(path, plot)
            .map_err(|e| anyhow::anyhow!("cannot write --svg '{}': {e}", path.display()))?;
    }
    print_message(json, &coverage, |coverage| {
        println!(
            "coverage of {}: the completion curve is drawn from {} complete months; months at least {} \
             months old are complete and may always be ordered",
            coverage.benefit_type, coverage.mature_months, coverage.mature_after_months
        );
        if coverage.mature_months == 0 {
            println!("no complete month to draw the curve from: no recent month can be ordered yet");
        }
        println!();
        println!("{:<8} {:>4} {:>9}  ORDERABLE", "MONTH", "AGE", "COVERAGE");
        for m in &coverage.months {
            println!(
                "{:<8} {:>4} {:>7.1} %  {}",
                m.month,
                m.age_months,
                m.coverage * 100.0,
                yes_no(m.orderable)
            );
        }
        match coverage
            .months
            .iter()
            .filter(|m| m.orderable)
            .min_by_key(|m| m.age_months)
        {
            Some(m) => println!(
                "\nthe latest month that may be ordered: {} (an order's period may end in it)",
                m.month
            ),
            None => println!("\nnone of these recent months may be ordered yet"),
        }
        if let Some(path) = svg {
            println!("wrote the completion curve to {}", path.display());
        }
        Ok(())
    })
}

/// Escapes text for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The completion curve (`curve[k]`: the share of a month's days paid within k months) as an SVG
/// line plot with the 95 % line, in plain SVG text.
pub(super) fn completion_svg(benefit: &str, curve: &[f64], mature_months: u32) -> String {
    const W: f64 = 640.0;
    const H: f64 = 360.0;
    const LEFT: f64 = 64.0;
    const RIGHT: f64 = 24.0;
    const TOP: f64 = 44.0;
    const BOTTOM: f64 = 52.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let steps = curve.len().saturating_sub(1).max(1) as f64;
    let x = |k: usize| LEFT + k as f64 * plot_w / steps;
    let y = |share: f64| TOP + (1.0 - share.clamp(0.0, 1.0)) * plot_h;

    let mut svg = String::new();
    let mut put = |line: String| {
        svg.push_str(&line);
        svg.push('\n');
    };
    put(r#"<?xml version="1.0" encoding="UTF-8"?>"#.to_string());
    put(format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    ));
    let title = format!(
        "Completion curve, {} (from {mature_months} complete months)",
        escape(benefit)
    );
    put(format!("<title>{title}</title>"));
    put(format!(r#"<rect width="{W}" height="{H}" fill="white"/>"#));
    put(format!(
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{title}</text>"#
    ));
    // The y axis: 0 to 100 %, a grid line each quarter.
    for quarter in 0..=4 {
        let share = f64::from(quarter) * 0.25;
        let gy = y(share);
        put(format!(
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#dddddd"/>"##,
            LEFT + plot_w
        ));
        put(format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{} %</text>"#,
            LEFT - 6.0,
            gy + 4.0,
            quarter * 25
        ));
    }
    // The x axis: months after the month, labelled at most about 24 times.
    let every = curve.len().div_ceil(24).max(1);
    for k in (0..curve.len()).step_by(every) {
        put(format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{k}</text>"#,
            x(k),
            TOP + plot_h + 16.0
        ));
    }
    put(format!(
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{0:.1}" stroke="#333333"/><line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#333333"/>"##,
        TOP + plot_h,
        LEFT + plot_w
    ));
    put(format!(
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">months after the month</text>"#,
        LEFT + plot_w / 2.0,
        H - 12.0
    ));
    put(format!(
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {0:.1})">share of the month's days paid</text>"#,
        TOP + plot_h / 2.0
    ));
    // The line from which a month may be ordered.
    let line_y = y(ORDERABLE_FROM);
    put(format!(
        r##"<line x1="{LEFT}" y1="{line_y:.1}" x2="{:.1}" y2="{line_y:.1}" stroke="#c0392b" stroke-dasharray="6 4"/>"##,
        LEFT + plot_w
    ));
    put(format!(
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c0392b">95 %: orderable</text>"##,
        LEFT + plot_w - 4.0,
        line_y + 14.0
    ));
    // The curve.
    let mut points = String::new();
    for (k, share) in curve.iter().enumerate() {
        // Writing to a String cannot fail.
        let _ = write!(
            points,
            "{}{:.1},{:.1}",
            if k == 0 { "" } else { " " },
            x(k),
            y(*share)
        );
    }
    put(format!(
        r##"<polyline points="{points}" fill="none" stroke="#1f5fa8" stroke-width="2"/>"##
    ));
    for (k, share) in curve.iter().enumerate() {
        put(format!(
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#1f5fa8"><title>{k} months: {:.1} %</title></circle>"##,
            x(k),
            y(*share),
            share * 100.0
        ));
    }
    put("</svg>".to_string());
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_draws_every_point_of_the_curve_and_the_95_line() {
        let svg = completion_svg("RP<x>", &[0.0, 0.6, 0.9, 0.95, 1.0], 13);
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Completion curve, RP&lt;x&gt; (from 13 complete months)"));
        let points = svg
            .lines()
            .find(|l| l.starts_with("<polyline"))
            .and_then(|l| l.split('"').nth(1))
            .unwrap();
        let points: Vec<&str> = points.split(' ').collect();
        // 0 % at the bottom of the plot (44 + 264), 100 % at its top, the last month at the right.
        assert_eq!(
            points,
            [
                "64.0,308.0",
                "202.0,149.6",
                "340.0,70.4",
                "478.0,57.2",
                "616.0,44.0"
            ]
        );
        assert!(
            svg.contains(r##"y1="57.2" x2="616.0" y2="57.2" stroke="#c0392b""##),
            "{svg}"
        );
        assert_eq!(svg.matches("<circle").count(), 5);
    }

    #[test]
    fn an_empty_curve_is_still_a_plot() {
        let svg = completion_svg("SJP", &[], 0);
        assert!(svg.contains(r#"<polyline points="""#));
        assert!(svg.contains("95 %"));
    }
}
