//! bench-report: turns the rows scripts/benchmark.sh collected into a Markdown report and
//! an SVG chart.
//!
//! Rows are tab-separated: `section, metric, unit, dse, baseline` and optionally the
//! smallest and largest ratio dse/baseline seen over the rounds. The unit says which way
//! is better: units starting with "ops" are higher-is-better, every other unit
//! (ms, ns/op, B/key, B/conn) lower-is-better.
//!
//! The chart shows, per row of the chosen sections, dse's advantage: dse/baseline when
//! higher is better, baseline/dse when lower is better, so that right of 1 is always dse
//! ahead, with the range over the rounds as a whisker.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Parser;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

#[derive(Parser, Debug)]
#[command(
    name = "bench-report",
    about = "Writes report.md (a table per section) and chart.svg (dse's advantage per row) \
             from the rows scripts/benchmark.sh collected."
)]
struct Opts {
    /// The rows file (tab-separated)
    rows: PathBuf,

    /// Directory for report.md and chart.svg
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,

    /// A line under the title (machine, versions, how the numbers were taken); repeat
    #[arg(long)]
    note: Vec<String>,

    /// What the baseline column is for a section, as SECTION=TEXT; repeat
    #[arg(long)]
    baseline: Vec<String>,

    /// Sections drawn in the chart, comma-separated [default: network,memory,clients]
    #[arg(long, default_value = "network,memory,clients")]
    chart: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    section: String,
    metric: String,
    unit: String,
    dse: f64,
    base: f64,
    range: Option<(f64, f64)>,
}

impl Row {
    fn higher_is_better(&self) -> bool {
        self.unit.starts_with("ops")
    }

    fn ratio(&self) -> f64 {
        if self.base == 0.0 {
            f64::NAN
        } else {
            self.dse / self.base
        }
    }

    /// How many times better dse is (above 1: dse ahead), with the range over rounds.
    fn advantage(&self) -> (f64, Option<(f64, f64)>) {
        let r = self.ratio();
        if self.higher_is_better() {
            (r, self.range)
        } else {
            (1.0 / r, self.range.map(|(lo, hi)| (1.0 / hi, 1.0 / lo)))
        }
    }
}

fn parse_rows(text: &str) -> Result<Vec<Row>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            let num = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("line {}: '{s}' is not a number", i + 1))
            };
            if f.len() != 5 && f.len() != 7 {
                return Err(format!(
                    "line {}: 5 or 7 tab-separated fields expected",
                    i + 1
                ));
            }
            Ok(Row {
                section: f[0].to_string(),
                metric: f[1].to_string(),
                unit: f[2].to_string(),
                dse: num(f[3])?,
                base: num(f[4])?,
                range: if f.len() == 7 {
                    Some((num(f[5])?, num(f[6])?))
                } else {
                    None
                },
            })
        })
        .collect()
}

/// A value for a table: rates with thousands separators, sizes and times as they read best.
fn show(x: f64, unit: &str) -> String {
    if unit.starts_with("ops") || unit == "B/key" || unit == "B/conn" || unit == "ns/op" {
        dse_bench::fmt_rate(x)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

fn markdown(rows: &[Row], notes: &[String], baselines: &[(String, String)]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# dse benchmark report\n");
    for n in notes {
        let _ = writeln!(md, "{n}  ");
    }
    let mut sections: Vec<&str> = Vec::new();
    for r in rows {
        if !sections.contains(&r.section.as_str()) {
            sections.push(&r.section);
        }
    }
    for s in sections {
        let base = baselines
            .iter()
            .find(|(name, _)| name == s)
            .map_or("baseline", |(_, text)| text.as_str());
        let _ = writeln!(md, "\n## {s}\n");
        let _ = writeln!(
            md,
            "| measurement | unit | dse | {base} | dse/{base} (min..max) | better |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---|");
        for r in rows.iter().filter(|r| r.section == s) {
            let ratio = dse_bench::fmt_ratio(r.ratio());
            let range = r.range.map_or(String::new(), |(lo, hi)| {
                format!(
                    " ({}..{})",
                    dse_bench::fmt_ratio(lo),
                    dse_bench::fmt_ratio(hi)
                )
            });
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {ratio}{range} | {} |",
                r.metric,
                r.unit,
                show(r.dse, &r.unit),
                show(r.base, &r.unit),
                if r.higher_is_better() {
                    "higher"
                } else {
                    "lower"
                }
            );
        }
    }
    md
}

fn chart(rows: &[&Row], path: &std::path::Path, title: &str) -> Result<(), String> {
    let n = rows.len().max(1);
    let height = 90 + 26 * n as u32;
    let root = SVGBackend::new(path, (980, height)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let xmax = rows
        .iter()
        .flat_map(|r| {
            let (a, range) = r.advantage();
            [a, range.map_or(a, |(_, hi)| hi)]
        })
        .filter(|x| x.is_finite())
        .fold(1.5f64, f64::max)
        * 1.1;
    let labels: Vec<String> = rows
        .iter()
        .rev()
        .map(|r| format!("{}: {}", r.section, r.metric))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(430)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("dse's advantage (dse/redis for throughput, redis/dse for CPU and memory; right of 1: dse better)")
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| err(&e))?;
    const THROUGHPUT: RGBColor = RGBColor(52, 101, 164);
    const CPU: RGBColor = RGBColor(245, 121, 0);
    const OTHER: RGBColor = RGBColor(78, 154, 6);
    for (name, color) in [
        ("throughput (ops/s)", THROUGHPUT),
        ("server CPU per operation", CPU),
        ("memory, latency, connect time", OTHER),
    ] {
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, SegmentValue<usize>)>>())
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    // The first row on top, as in the table.
    for (row, r) in rows.iter().enumerate() {
        let i = n - 1 - row;
        let (adv, range) = r.advantage();
        if !adv.is_finite() {
            continue;
        }
        let color = if r.higher_is_better() {
            THROUGHPUT
        } else if r.unit == "ns/op" {
            CPU
        } else {
            OTHER
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (adv, SegmentValue::Exact(i + 1)),
            ],
            color.mix(0.8).filled(),
        );
        // Leave a gap between bars.
        bar.set_margin(3, 3, 0, 0);
        chart
            .draw_series(std::iter::once(bar))
            .map_err(|e| err(&e))?;
        if let Some((lo, hi)) = range
            && lo.is_finite()
            && hi.is_finite()
        {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![
                        (lo, SegmentValue::CenterOf(i)),
                        (hi, SegmentValue::CenterOf(i)),
                    ],
                    BLACK.stroke_width(2),
                )))
                .map_err(|e| err(&e))?;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{adv:.2}x"),
                (adv + xmax * 0.01, SegmentValue::CenterOf(i)),
                ("sans-serif", 12),
            )))
            .map_err(|e| err(&e))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
            RED.stroke_width(1),
        )))
        .map_err(|e| err(&e))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn main() {
    let opts = Opts::parse();
    if let Err(e) = run(&opts) {
        eprintln!("bench-report: {e}");
        std::process::exit(2);
    }
}

fn run(opts: &Opts) -> Result<(), String> {
    let text = std::fs::read_to_string(&opts.rows)
        .map_err(|e| format!("cannot read {}: {e}", opts.rows.display()))?;
    let rows = parse_rows(&text)?;
    let baselines: Vec<(String, String)> = opts
        .baseline
        .iter()
        .map(|b| {
            b.split_once('=')
                .map(|(s, t)| (s.to_string(), t.to_string()))
                .ok_or_else(|| format!("--baseline '{b}' is not SECTION=TEXT"))
        })
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let md_path = opts.out.join("report.md");
    std::fs::write(&md_path, markdown(&rows, &opts.note, &baselines))
        .map_err(|e| format!("cannot write {}: {e}", md_path.display()))?;
    let wanted: Vec<&str> = opts.chart.split(',').map(str::trim).collect();
    let charted: Vec<&Row> = rows
        .iter()
        .filter(|r| wanted.contains(&r.section.as_str()))
        .collect();
    let svg_path = opts.out.join("chart.svg");
    chart(
        &charted,
        &svg_path,
        "dse against redis-server (medians; whiskers: min..max over rounds)",
    )?;
    println!("wrote {} and {}", md_path.display(), svg_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_advantage_flips_for_lower_is_better() {
        let rows = parse_rows(
            "network\tpinned P16 SET\tops/s\t300\t200\t1.2\t1.8\n\
             network\tpinned P16 SET CPU per op\tns/op\t500\t1000\n\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].advantage(), (1.5, Some((1.2, 1.8))));
        assert_eq!(rows[1].advantage().0, 2.0);
        assert!(parse_rows("a\tb\tc\t1").is_err());
        let md = markdown(
            &rows,
            &["note".into()],
            &[("network".into(), "redis".into())],
        );
        assert!(md.contains("| pinned P16 SET | ops/s | 300 | 200 | 1.50 (1.20..1.80) | higher |"));
    }

    #[test]
    fn chart_is_written_without_fonts() {
        let dir = std::env::temp_dir().join(format!("bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rows = parse_rows("memory\tbytes per key\tB/key\t60\t120\n").unwrap();
        let refs: Vec<&Row> = rows.iter().collect();
        let path = dir.join("chart.svg");
        chart(&refs, &path, "test").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("2.00x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
