//! The report's content from finished cells: per data set, the models side by side for clean
//! accuracy, each attack × ε, each corruption × severity with the means (15 benchmark, all 19,
//! per family, per severity) and mCE where it exists; the plots; warnings; and the provenance of
//! every number.
//!
//! Intervals: a single accuracy gets its 95 % Wilson interval; a mean over several cells on the
//! same images gets the standard error of the per-image mean score (which accounts for the
//! correlation between cells that share images).

use std::collections::BTreeMap;

use corruptions::{Category, Corruption, Preset};
use serde_json::Value;

use crate::data::DatasetKind;
use crate::error::Result;
use crate::evaluate::aggregate::{corruption_report, CorruptionCell};
use crate::evaluate::results::StoredCell;
use crate::report::document::{Block, Figure, Table};
use crate::report::plots::{heat_map, line_plot, LinePlot, Point, Series};
use crate::stats::{wilson_interval, Z95};

/// A column of the tables: one model under one defense.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Column {
    pub label: String,
    pub defense: String,
}

impl Column {
    fn of(cell: &StoredCell) -> Self {
        Self {
            label: text(&cell.record["model"]["label"]),
            defense: text(&cell.record["defense"]),
        }
    }

    pub fn header(&self) -> String {
        if self.defense == "none" {
            self.label.clone()
        } else {
            format!("{} ({})", self.label, self.defense)
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The cells of one data set (same data set and number of images).
pub struct Group<'a> {
    pub dataset: String,
    pub n: usize,
    pub cells: Vec<&'a StoredCell>,
    pub columns: Vec<Column>,
}

impl<'a> Group<'a> {
    /// The cells grouped by data set and n, in a stable order.
    pub fn all(cells: &'a [StoredCell]) -> Vec<Group<'a>> {
        let mut groups: BTreeMap<(String, usize), Vec<&StoredCell>> = BTreeMap::new();
        for cell in cells {
            let dataset = text(&cell.record["data"]["dataset"]);
            groups
                .entry((dataset, cell.result.n))
                .or_default()
                .push(cell);
        }
        groups
            .into_iter()
            .map(|((dataset, n), cells)| {
                let mut columns: Vec<Column> = cells.iter().map(|c| Column::of(c)).collect();
                columns.sort();
                columns.dedup();
                Group {
                    dataset,
                    n,
                    cells,
                    columns,
                }
            })
            .collect()
    }

    fn of_kind(&self, kind: &str) -> impl Iterator<Item = &'a StoredCell> + '_ {
        let kind = kind.to_string();
        self.cells
            .iter()
            .copied()
            .filter(move |c| c.record["columns"]["kind"] == kind.as_str())
    }

    fn find(&self, column: &Column, pred: impl Fn(&StoredCell) -> bool) -> Option<&'a StoredCell> {
        self.cells
            .iter()
            .copied()
            .find(|c| &Column::of(c) == column && pred(c))
    }

    fn title(&self) -> String {
        let name = match self.dataset.as_str() {
            "cifar10" => "CIFAR-10",
            "cifar100" => "CIFAR-100",
            "imagenet" => "ImageNet",
            other => other,
        };
        format!("{name}, {} images", self.n)
    }

    /// Prefix of the group's plot files when a report covers several data sets.
    fn file_prefix(&self, several: bool) -> String {
        if several {
            format!("{}_{}_", self.dataset, self.n)
        } else {
            String::new()
        }
    }
}

fn percent(p: f64) -> String {
    format!("{:.2}", 100.0 * p)
}

/// `76.20 (73.46–78.75)`: an accuracy of n images with its 95 % Wilson interval.
fn with_wilson(p: f64, n: usize) -> String {
    let (low, high) = wilson_interval((p * n as f64).round() as usize, n);
    format!("{} ({:.1}–{:.1})", percent(p), 100.0 * low, 100.0 * high)
}

/// A cell's proportion `metric` with its Wilson interval, or a dash.
fn metric_text(cell: Option<&StoredCell>, metric: &str) -> String {
    match cell.and_then(|c| Some((c.result.metric(metric)?, c.result.n))) {
        Some((v, n)) => with_wilson(v, n),
        None => "–".into(),
    }
}

fn with_stderr(mean: f64, se: f64) -> String {
    format!("{} ±{:.2}", percent(mean), 100.0 * se)
}

fn wilson_point(x: f64, p: f64, n: usize) -> Point {
    let (low, high) = wilson_interval((p * n as f64).round() as usize, n);
    Point {
        x,
        y: 100.0 * p,
        low: 100.0 * low,
        high: 100.0 * high,
    }
}

/// Whether a cell's image is classified correctly (clean, corrupted or attacked).
fn outcomes(cell: &StoredCell) -> Vec<(usize, bool)> {
    cell.rows.iter().map(|r| (r.index, r.correct())).collect()
}

/// Mean accuracy over cells on the same images and the standard error of the per-image mean
/// score; `None` without cells.
pub fn pooled(cells: &[&StoredCell]) -> Option<(f64, f64)> {
    let first = cells.first()?;
    let mut scores: BTreeMap<usize, f64> = first.rows.iter().map(|r| (r.index, 0.0)).collect();
    let mut paired = true;
    for cell in cells {
        for (index, correct) in outcomes(cell) {
            match scores.get_mut(&index) {
                Some(s) => *s += f64::from(u8::from(correct)) / cells.len() as f64,
                None => paired = false,
            }
        }
    }
    let mean = cells.iter().map(|c| c.result.headline()).sum::<f64>() / cells.len() as f64;
    let se = if paired && scores.len() > 1 {
        let n = scores.len() as f64;
        let m = scores.values().sum::<f64>() / n;
        let var = scores.values().map(|s| (s - m).powi(2)).sum::<f64>() / (n - 1.0);
        (var / n).sqrt()
    } else {
        // Different images: treat the cells as independent.
        let var: f64 = cells
            .iter()
            .map(|c| {
                let p = c.result.headline();
                p * (1.0 - p) / c.result.n.max(1) as f64
            })
            .sum();
        var.sqrt() / cells.len() as f64
    };
    Some((mean, se))
}

/// Every section of the report, one set per data set, with the figures they show.
pub fn sections(cells: &[StoredCell]) -> Result<Vec<Block>> {
    let groups = Group::all(cells);
    let several = groups.len() > 1;
    let mut blocks = Vec::new();
    for group in &groups {
        blocks.push(Block::Heading(2, group.title()));
        blocks.push(Block::Paragraph(format!(
            "Models: {}. Accuracies in %, with the 95 % Wilson interval of a single figure, or ± \
             the standard error of the per-image mean score for means over several cells.",
            group
                .columns
                .iter()
                .map(Column::header)
                .collect::<Vec<_>>()
                .join(", ")
        )));
        let prefix = group.file_prefix(several);
        blocks.extend(clean_section(group));
        blocks.extend(attack_section(group, &prefix)?);
        blocks.extend(corruption_section(group, &prefix)?);
        blocks.extend(lambda_section(group, &prefix)?);
    }
    Ok(blocks)
}

fn header(first: &str, group: &Group) -> Vec<String> {
    std::iter::once(first.to_string())
        .chain(group.columns.iter().map(Column::header))
        .collect()
}

fn clean_section(group: &Group) -> Vec<Block> {
    let clean: Vec<&StoredCell> = group.of_kind("clean").collect();
    if clean.is_empty() {
        return Vec::new();
    }
    let mut rows = Vec::new();
    for (metric, name) in [("accuracy", "top-1"), ("top5_accuracy", "top-5")] {
        let mut row = vec![name.to_string()];
        for column in &group.columns {
            let cell = group.find(column, |c| c.record["columns"]["kind"] == "clean");
            row.push(metric_text(cell, metric));
        }
        rows.push(row);
    }
    vec![
        Block::Heading(3, "Clean accuracy".into()),
        Block::Table(Table {
            header: header("metric", group),
            rows,
            numeric_from: 1,
        }),
    ]
}

/// An attack cell's condition in words: `PGD-10 L∞ ε = 2/255 (α = 2/1020, random start)`.
fn attack_title(cell: &StoredCell) -> String {
    attack_title_with(cell, true)
}

/// How the attack met the defense: adaptive (the default), static or transfer.
fn attack_mode(cell: &StoredCell) -> String {
    cell.record["condition"]["against_defense"]
        .as_str()
        .unwrap_or("adaptive")
        .to_string()
}

fn attack_title_with(cell: &StoredCell, with_mode: bool) -> String {
    let c = &cell.record["condition"];
    let attack = &c["attack"];
    let name = text(&attack["attack"]).to_uppercase();
    let steps = attack["steps"].as_u64();
    let norm = match attack["norm"].as_str() {
        Some("linf") => "L∞",
        Some("l2") => "L2",
        _ => "",
    };
    let mut title = match steps {
        Some(s) if name != "FGSM" => format!("{name}-{s} {norm} ε = {}", text(&c["eps"])),
        _ => format!("{name} {norm} ε = {}", text(&c["eps"])),
    };
    let mut details = Vec::new();
    if let Some(alpha) = c["alpha_as_written"].as_str() {
        details.push(format!("α = {alpha}"));
    }
    let restarts = c["restarts"].as_u64().unwrap_or(1);
    if restarts > 1 {
        details.push(format!("{restarts} restarts"));
    }
    if let Some(eot) = attack["eot"].as_u64().filter(|e| *e > 1) {
        details.push(format!("EOT {eot}"));
    }
    if attack["random_start"] == true {
        details.push("random start".into());
    }
    if let Some(t) = c["targeted"].as_str().filter(|t| *t != "none") {
        details.push(format!("targeted: {t}"));
    }
    if let Some(mode) = c["against_defense"].as_str().filter(|_| with_mode) {
        details.push(format!("{mode} attack"));
    }
    if !details.is_empty() {
        title.push_str(&format!(" ({})", details.join(", ")));
    }
    title
}

/// Attack cells of one kind of curve (same attack, steps, norm, restarts, targeting): robust
/// accuracy vs ε. Also names the curve's plot file, e.g. `pgd10_linf`.
fn attack_family(cell: &StoredCell) -> String {
    let c = &cell.record["condition"];
    let a = &c["attack"];
    let mut name = text(&a["attack"]);
    if name != "fgsm" {
        name.push_str(&text(&a["steps"]));
    }
    name.push('_');
    name.push_str(&text(&a["norm"]));
    if let Some(r) = c["restarts"].as_u64().filter(|r| *r > 1) {
        name.push_str(&format!("_{r}restarts"));
    }
    if let Some(t) = c["targeted"].as_str().filter(|t| *t != "none") {
        name.push_str(&format!("_targeted-{t}"));
    }
    if let Some(mode) = c["against_defense"].as_str() {
        name.push_str(&format!("_{mode}"));
    }
    name
}

/// Per column and attack (all modes together), the worst case over the attack modes that ran:
/// an image counts as robust only if no mode broke it. Also flags defenses whose robustness
/// under a non-adaptive attack exceeds the worst case by more than 5 points.
fn worst_case(group: &Group, attacks: &[&StoredCell]) -> (Vec<Vec<String>>, Vec<String>) {
    let mut bases: Vec<String> = Vec::new();
    for cell in attacks {
        let base = attack_title_with(cell, false);
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    let mut rows = Vec::new();
    let mut flags = Vec::new();
    for base in bases {
        let mut row = vec![format!("worst case over attack modes: {base}")];
        let mut any = false;
        for column in &group.columns {
            let cells: Vec<&StoredCell> = attacks
                .iter()
                .copied()
                .filter(|c| &Column::of(c) == column && attack_title_with(c, false) == base)
                .collect();
            if cells.len() < 2 {
                row.push("–".into());
                continue;
            }
            any = true;
            let mut robust: BTreeMap<usize, bool> = BTreeMap::new();
            for cell in &cells {
                for r in &cell.rows {
                    let entry = robust.entry(r.index).or_insert(true);
                    *entry &= r.correct();
                }
            }
            let n = robust.len();
            let worst = robust.values().filter(|r| **r).count() as f64 / n.max(1) as f64;
            row.push(with_wilson(worst, n));
            for cell in &cells {
                let mode = attack_mode(cell);
                let value = cell.result.metric("robust_accuracy").unwrap_or(0.0);
                if mode != "adaptive" && value - worst > 0.05 {
                    flags.push(format!(
                        "{}: {base} gives {} % under the {mode} attack but {} % in the worst \
                         case: the {mode} figure overstates the defense",
                        column.header(),
                        percent(value),
                        percent(worst)
                    ));
                }
            }
        }
        if any {
            rows.push(row);
        }
    }
    (rows, flags)
}

fn eps_value(cell: &StoredCell) -> f64 {
    cell.record["condition"]["attack"]["eps"]
        .as_f64()
        .unwrap_or(f64::NAN)
}

fn attack_section(group: &Group, prefix: &str) -> Result<Vec<Block>> {
    let mut attacks: Vec<&StoredCell> = group.of_kind("attack").collect();
    if attacks.is_empty() {
        return Ok(Vec::new());
    }
    attacks.sort_by(|a, b| {
        (attack_family(a), eps_value(a))
            .partial_cmp(&(attack_family(b), eps_value(b)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    // One row per distinct condition: its title spells out every setting.
    let mut titles: Vec<String> = attacks.iter().map(|c| attack_title(c)).collect();
    titles.dedup();
    let mut clean_row = vec!["clean (same images)".to_string()];
    for column in &group.columns {
        let cell = group.find(column, |c| c.record["columns"]["kind"] == "attack");
        clean_row.push(metric_text(cell, "clean_accuracy"));
    }
    let mut rows = vec![clean_row];
    for title in titles {
        let mut row = vec![title.clone()];
        for column in &group.columns {
            let cell = group.find(column, |c| attack_title(c) == title);
            row.push(metric_text(cell, "robust_accuracy"));
        }
        rows.push(row);
    }
    let (worst_rows, flags) = worst_case(group, &attacks);
    rows.extend(worst_rows);
    let mut blocks = vec![
        Block::Heading(3, "Robust accuracy under attack".into()),
        Block::Table(Table {
            header: header("attack", group),
            rows,
            numeric_from: 1,
        }),
    ];
    let costs: Vec<String> = group
        .columns
        .iter()
        .filter_map(|column| {
            let cell = group.find(column, |c| c.record["columns"]["kind"] == "attack")?;
            let settings = &cell.record["defense_settings"];
            let extra = settings["extra_csc_solves_per_image"].as_u64()?;
            let bn = if settings["bn_adapt"] == true {
                ", BatchNorm adapted to each batch"
            } else {
                ""
            };
            Some(format!(
                "{}: {extra} first-layer CSC solves per image beyond one forward pass to choose λ{bn}",
                column.header()
            ))
        })
        .collect();
    if !costs.is_empty() {
        blocks.push(Block::Paragraph(
            "What each defense costs at inference:".into(),
        ));
        blocks.push(Block::Bullets(costs));
    }
    if !flags.is_empty() {
        blocks.push(Block::Paragraph(
            "Defenses that only look robust under a non-adaptive attack:".into(),
        ));
        blocks.push(Block::Bullets(flags));
    }
    let mut figures = Vec::new();
    let mut families: Vec<String> = attacks.iter().map(|c| attack_family(c)).collect();
    families.dedup();
    for family in families {
        let cells: Vec<&StoredCell> = attacks
            .iter()
            .copied()
            .filter(|c| attack_family(c) == family)
            .collect();
        let linf = cells[0].record["condition"]["attack"]["norm"] == "linf";
        let scale = if linf { 255.0 } else { 1.0 };
        let mut series = Vec::new();
        for column in &group.columns {
            let mine: Vec<&StoredCell> = cells
                .iter()
                .copied()
                .filter(|c| &Column::of(c) == column)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut points = Vec::new();
            if let Some(clean) = mine[0].result.metric("clean_accuracy") {
                points.push(wilson_point(0.0, clean, mine[0].result.n));
            }
            for c in &mine {
                if let Some(robust) = c.result.metric("robust_accuracy") {
                    points.push(wilson_point(scale * eps_value(c), robust, c.result.n));
                }
            }
            series.push(Series {
                name: column.header(),
                points,
            });
        }
        let name = attack_title(cells[0]);
        let mut curve = name.split(" ε").next().unwrap_or(&name).to_string();
        let mode = attack_mode(cells[0]);
        if mode != "adaptive" {
            curve.push_str(&format!(" ({mode} attack)"));
        }
        let svg = line_plot(&LinePlot {
            title: format!("{curve}: robust accuracy vs ε"),
            x_label: if linf {
                "ε (×1/255)".into()
            } else {
                "ε (L2)".into()
            },
            y_label: "accuracy (%)".into(),
            series,
        })?;
        figures.push(Figure {
            file: format!("{prefix}robust_accuracy_{}.svg", file_name(&family)),
            svg,
            caption: format!(
                "{curve}: robust accuracy against ε (ε = 0: clean), 95 % Wilson intervals."
            ),
        });
    }
    blocks.push(Block::Figures(figures));
    Ok(blocks)
}

/// A file-name-safe version of a label.
pub fn file_name(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The corruption cells of one column, by corruption and severity.
fn corruption_cells<'a>(
    group: &Group<'a>,
    column: &Column,
) -> BTreeMap<(usize, u8), &'a StoredCell> {
    group
        .of_kind("corruption")
        .filter(|c| &Column::of(c) == column)
        .filter_map(|c| {
            let name = c.record["columns"]["corruption"].as_str()?;
            let corruption: Corruption = name.parse().ok()?;
            let position = Corruption::ALL.iter().position(|x| *x == corruption)?;
            let severity: u8 = text(&c.record["columns"]["severity"]).parse().ok()?;
            Some(((position, severity), c))
        })
        .collect()
}

fn category_name(c: Category) -> &'static str {
    match c {
        Category::Noise => "noise",
        Category::Blur => "blur",
        Category::Weather => "weather",
        Category::Digital => "digital",
    }
}

const CATEGORIES: [Category; 4] = [
    Category::Noise,
    Category::Blur,
    Category::Weather,
    Category::Digital,
];

fn corruption_section(group: &Group, prefix: &str) -> Result<Vec<Block>> {
    let per_column: Vec<BTreeMap<(usize, u8), &StoredCell>> = group
        .columns
        .iter()
        .map(|c| corruption_cells(group, c))
        .collect();
    if per_column.iter().all(|m| m.is_empty()) {
        return Ok(Vec::new());
    }
    let mut present: Vec<usize> = per_column
        .iter()
        .flat_map(|m| m.keys().map(|k| k.0))
        .collect();
    present.sort();
    present.dedup();
    let mut severities: Vec<u8> = per_column
        .iter()
        .flat_map(|m| m.keys().map(|k| k.1))
        .collect();
    severities.sort();
    severities.dedup();
    let mut blocks = vec![Block::Heading(3, "Common corruptions".into())];
    blocks.push(Block::Table(summary_table(
        group,
        &per_column,
        &present,
        &severities,
    )));
    blocks.push(Block::Paragraph(
        "Mean accuracy over the evaluated severities, per corruption:".into(),
    ));
    blocks.push(Block::Table(per_corruption_table(
        group,
        &per_column,
        &present,
    )));
    let mut figures = family_plots(group, &per_column, &severities, prefix)?;
    for (column, cells) in group.columns.iter().zip(&per_column) {
        if cells.is_empty() {
            continue;
        }
        blocks.push(Block::Paragraph(format!(
            "{}: accuracy per corruption and severity (± standard error):",
            column.header()
        )));
        blocks.push(Block::Table(grid_table(cells, &present, &severities)));
        let rows: Vec<String> = present
            .iter()
            .map(|&p| Corruption::ALL[p].name().to_string())
            .collect();
        let values: Vec<Vec<Option<f64>>> = present
            .iter()
            .map(|&p| {
                severities
                    .iter()
                    .map(|&s| cells.get(&(p, s)).map(|c| c.result.headline()))
                    .collect()
            })
            .collect();
        let svg = heat_map(
            &format!(
                "{}: accuracy (%) by corruption and severity",
                column.header()
            ),
            &rows,
            &severities
                .iter()
                .map(|s| format!("severity {s}"))
                .collect::<Vec<_>>(),
            &values,
        )?;
        figures.push(Figure {
            file: format!("{prefix}heatmap_{}.svg", file_name(&column.header())),
            svg,
            caption: format!("{}: accuracy per corruption × severity.", column.header()),
        });
    }
    blocks.push(Block::Figures(figures));
    Ok(blocks)
}

fn select<'a>(
    cells: &BTreeMap<(usize, u8), &'a StoredCell>,
    keep: impl Fn(usize, u8) -> bool,
) -> Vec<&'a StoredCell> {
    cells
        .iter()
        .filter(|((p, s), _)| keep(*p, *s))
        .map(|(_, c)| *c)
        .collect()
}

/// Which (corruption position, severity) cells a row of the summary averages over.
type CellFilter = Box<dyn Fn(usize, u8) -> bool>;

fn summary_table(
    group: &Group,
    per_column: &[BTreeMap<(usize, u8), &StoredCell>],
    present: &[usize],
    severities: &[u8],
) -> Table {
    let complete = |set: std::ops::Range<usize>| set.clone().all(|p| present.contains(&p));
    let mut rows: Vec<(String, CellFilter)> = Vec::new();
    if complete(0..15) {
        rows.push((
            "mean, 15 benchmark corruptions".into(),
            Box::new(|p, _| p < 15),
        ));
    }
    if complete(0..19) {
        rows.push(("mean, all 19 corruptions".into(), Box::new(|_, _| true)));
    }
    if !complete(0..15) {
        rows.push((
            format!("mean, the {} evaluated corruptions", present.len()),
            Box::new(|_, _| true),
        ));
    }
    for category in CATEGORIES {
        let members: Vec<usize> = present
            .iter()
            .copied()
            .filter(|&p| Corruption::ALL[p].category() == category)
            .collect();
        if members.is_empty() {
            continue;
        }
        rows.push((
            format!(
                "{} ({} corruption{})",
                category_name(category),
                members.len(),
                if members.len() == 1 { "" } else { "s" }
            ),
            Box::new(move |p, _| members.contains(&p)),
        ));
    }
    for &s in severities {
        rows.push((format!("severity {s}"), Box::new(move |_, sev| sev == s)));
    }
    let mut table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, keep)| {
            let mut row = vec![name.clone()];
            for cells in per_column {
                row.push(match pooled(&select(cells, keep)) {
                    Some((m, se)) => with_stderr(m, se),
                    None => "–".into(),
                });
            }
            row
        })
        .collect();
    let mce: Vec<Option<(f64, Option<f64>)>> = group
        .columns
        .iter()
        .zip(per_column)
        .map(|(column, cells)| mce(group, column, cells, severities))
        .collect();
    if mce.iter().any(Option::is_some) {
        let number = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.2}"));
        let mut absolute = vec!["mCE vs AlexNet (lower is better)".to_string()];
        let mut relative = vec!["relative mCE vs AlexNet".to_string()];
        for m in &mce {
            absolute.push(number(m.map(|m| m.0)));
            relative.push(number(m.and_then(|m| m.1)));
        }
        table_rows.push(absolute);
        table_rows.push(relative);
    }
    Table {
        header: header("accuracy (%)", group),
        rows: table_rows,
        numeric_from: 1,
    }
}

/// mCE and relative mCE, where the data set has the AlexNet reference (ImageNet, 15 × 5).
fn mce(
    group: &Group,
    column: &Column,
    cells: &BTreeMap<(usize, u8), &StoredCell>,
    severities: &[u8],
) -> Option<(f64, Option<f64>)> {
    let kind: DatasetKind = group.dataset.parse().ok()?;
    let imagenet_preset = cells.values().all(|c| {
        c.record["condition"]["source"]["generated"]
            .as_str()
            .is_none_or(|p| p == "imagenet")
    });
    let preset = if imagenet_preset {
        Preset::Imagenet
    } else {
        Preset::Cifar
    };
    let clean = group
        .find(column, |c| c.record["columns"]["kind"] == "clean")
        .map(|c| c.result.headline());
    let list: Vec<CorruptionCell> = cells
        .iter()
        .map(|((p, s), c)| CorruptionCell {
            corruption: Corruption::ALL[*p].name().into(),
            severity: *s,
            n: c.result.n,
            accuracy: c.result.headline(),
        })
        .collect();
    let report = corruption_report(clean, list, severities, kind, preset, 0.0);
    report.mce.map(|m| (m, report.relative_mce))
}

fn per_corruption_table(
    group: &Group,
    per_column: &[BTreeMap<(usize, u8), &StoredCell>],
    present: &[usize],
) -> Table {
    let rows = present
        .iter()
        .map(|&p| {
            let c = Corruption::ALL[p];
            let mut row = vec![
                c.name().to_string(),
                category_name(c.category()).to_string(),
            ];
            for cells in per_column {
                row.push(match pooled(&select(cells, |q, _| q == p)) {
                    Some((m, se)) => with_stderr(m, se),
                    None => "–".into(),
                });
            }
            row
        })
        .collect();
    let mut header = vec!["corruption".to_string(), "family".to_string()];
    header.extend(group.columns.iter().map(Column::header));
    Table {
        header,
        rows,
        numeric_from: 2,
    }
}

fn grid_table(
    cells: &BTreeMap<(usize, u8), &StoredCell>,
    present: &[usize],
    severities: &[u8],
) -> Table {
    let rows = present
        .iter()
        .map(|&p| {
            let mut row = vec![Corruption::ALL[p].name().to_string()];
            for &s in severities {
                row.push(match cells.get(&(p, s)) {
                    Some(c) => match pooled(&[*c]) {
                        Some((m, se)) => with_stderr(m, se),
                        None => "–".into(),
                    },
                    None => "–".into(),
                });
            }
            row.push(match pooled(&select(cells, |q, _| q == p)) {
                Some((m, se)) => with_stderr(m, se),
                None => "–".into(),
            });
            row
        })
        .collect();
    let mut header = vec!["corruption".to_string()];
    header.extend(severities.iter().map(|s| format!("s{s}")));
    header.push("mean".into());
    Table {
        header,
        rows,
        numeric_from: 1,
    }
}

/// Accuracy against severity (0 = clean) per corruption family, one curve per model.
fn family_plots(
    group: &Group,
    per_column: &[BTreeMap<(usize, u8), &StoredCell>],
    severities: &[u8],
    prefix: &str,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for category in CATEGORIES {
        let mut series = Vec::new();
        for (column, cells) in group.columns.iter().zip(per_column) {
            let in_family = |p: usize| Corruption::ALL[p].category() == category;
            let mut points = Vec::new();
            if let Some(clean) = group.find(column, |c| c.record["columns"]["kind"] == "clean") {
                points.push(wilson_point(0.0, clean.result.headline(), clean.result.n));
            }
            for &s in severities {
                if let Some((m, se)) = pooled(&select(cells, |p, sev| sev == s && in_family(p))) {
                    points.push(Point {
                        x: s as f64,
                        y: 100.0 * m,
                        low: 100.0 * (m - Z95 * se),
                        high: 100.0 * (m + Z95 * se),
                    });
                }
            }
            if points.len() > 1 {
                series.push(Series {
                    name: column.header(),
                    points,
                });
            }
        }
        if series.is_empty() {
            continue;
        }
        let name = category_name(category);
        figures.push(Figure {
            file: format!("{prefix}severity_{name}.svg"),
            svg: line_plot(&LinePlot {
                title: format!("{name} corruptions: accuracy vs severity"),
                x_label: "severity (0 = clean)".into(),
                y_label: "mean accuracy (%)".into(),
                series,
            })?,
            caption: format!(
                "Mean accuracy over the {name} corruptions per severity, ±1.96 standard errors."
            ),
        });
    }
    Ok(figures)
}

/// The λ a cell's model ran with: its defense's, else the model's own (for CSC models).
fn lambda_of(cell: &StoredCell) -> Option<f64> {
    match text(&cell.record["defense"]).strip_prefix("lambda=") {
        Some(l) => l.parse().ok(),
        None => cell.record["model"]["csc"]["lambda"].as_f64(),
    }
}

/// Accuracy against λ, for models evaluated under several λ (one curve per condition).
fn lambda_section(group: &Group, prefix: &str) -> Result<Vec<Block>> {
    let mut by_model: BTreeMap<String, Vec<&StoredCell>> = BTreeMap::new();
    for cell in &group.cells {
        if lambda_of(cell).is_some() {
            by_model
                .entry(text(&cell.record["model"]["label"]))
                .or_default()
                .push(cell);
        }
    }
    let mut figures = Vec::new();
    let mut tables = Vec::new();
    for (label, cells) in by_model {
        let mut lambdas: Vec<f64> = cells.iter().filter_map(|c| lambda_of(c)).collect();
        lambdas.sort_by(f64::total_cmp);
        lambdas.dedup();
        if lambdas.len() < 2 {
            continue;
        }
        let mut conditions: Vec<String> = cells
            .iter()
            .map(|c| text(&c.record["condition_label"]))
            .collect();
        conditions.sort();
        conditions.dedup();
        let mut series = Vec::new();
        let mut rows = Vec::new();
        for condition in &conditions {
            let mut points: Vec<Point> = cells
                .iter()
                .filter(|c| text(&c.record["condition_label"]) == *condition)
                .filter_map(|c| Some(wilson_point(lambda_of(c)?, c.result.headline(), c.result.n)))
                .collect();
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            let mut row = vec![condition.clone()];
            for l in &lambdas {
                row.push(match points.iter().find(|p| p.x == *l) {
                    Some(p) => format!("{:.2}", p.y),
                    None => "–".into(),
                });
            }
            rows.push(row);
            if points.len() > 1 {
                series.push(Series {
                    name: condition.clone(),
                    points,
                });
            }
        }
        let mut header = vec!["condition".to_string()];
        header.extend(lambdas.iter().map(|l| format!("λ = {l}")));
        tables.push(Block::Paragraph(format!(
            "{label}: accuracy (%) per test-time λ of every CSC layer:"
        )));
        tables.push(Block::Table(Table {
            header,
            rows,
            numeric_from: 1,
        }));
        figures.push(Figure {
            file: format!("{prefix}lambda_{}.svg", file_name(&label)),
            svg: line_plot(&LinePlot {
                title: format!("{label}: accuracy vs λ"),
                x_label: "λ (every CSC layer)".into(),
                y_label: "accuracy (%)".into(),
                series,
            })?,
            caption: format!("{label}: accuracy against the test-time λ, 95 % Wilson intervals."),
        });
    }
    if figures.is_empty() {
        return Ok(Vec::new());
    }
    let mut blocks = vec![Block::Heading(3, "Test-time λ".into())];
    blocks.extend(tables);
    blocks.push(Block::Figures(figures));
    Ok(blocks)
}
