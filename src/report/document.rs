//! A report as a list of blocks, rendered once as Markdown and once as self-contained HTML
//! (inline SVG and CSS, no script, no network), so that both always say the same thing.

use std::fmt::Write;

/// A table; columns from `numeric_from` on are right-aligned.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub numeric_from: usize,
}

/// A plot: its SVG text and the file it is also written to.
#[derive(Clone, Debug)]
pub struct Figure {
    pub file: String,
    pub svg: String,
    pub caption: String,
}

#[derive(Clone, Debug)]
pub enum Block {
    Heading(u8, String),
    Paragraph(String),
    Bullets(Vec<String>),
    Table(Table),
    /// Figures shown side by side where the page is wide enough.
    Figures(Vec<Figure>),
    Code(String),
}

#[derive(Clone, Debug, Default)]
pub struct Document {
    pub title: String,
    pub blocks: Vec<Block>,
}

impl Document {
    pub fn push(&mut self, block: Block) {
        self.blocks.push(block);
    }

    pub fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.blocks.iter().flat_map(|b| match b {
            Block::Figures(f) => f.as_slice(),
            _ => &[],
        })
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n", self.title);
        for block in &self.blocks {
            out.push('\n');
            match block {
                Block::Heading(level, text) => {
                    let _ = writeln!(out, "{} {text}", "#".repeat(*level as usize));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "{text}");
                }
                Block::Bullets(items) => {
                    for item in items {
                        let _ = writeln!(out, "- {item}");
                    }
                }
                Block::Table(table) => markdown_table(&mut out, table),
                Block::Figures(figures) => {
                    for f in figures {
                        let _ = writeln!(out, "![{}]({})", f.caption, f.file);
                    }
                }
                Block::Code(text) => {
                    let _ = writeln!(out, "```\n{}\n```", text.trim_end());
                }
            }
        }
        out
    }

    pub fn html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            escape(&self.title),
            escape(&self.title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading(level, text) => {
                    let level = (*level).clamp(2, 6);
                    let _ = writeln!(out, "<h{level}>{}</h{level}>", escape(text));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(out, "<p>{}</p>", inline_code(&escape(text)));
                }
                Block::Bullets(items) => {
                    out.push_str("<ul>\n");
                    for item in items {
                        let _ = writeln!(out, "<li>{}</li>", inline_code(&escape(item)));
                    }
                    out.push_str("</ul>\n");
                }
                Block::Table(table) => html_table(&mut out, table),
                Block::Figures(figures) => {
                    out.push_str("<div class=\"figures\">\n");
                    for f in figures {
                        let _ = writeln!(
                            out,
                            "<figure>{}<figcaption>{}</figcaption></figure>",
                            strip_xml_declaration(&f.svg),
                            escape(&f.caption)
                        );
                    }
                    out.push_str("</div>\n");
                }
                Block::Code(text) => {
                    let _ = writeln!(out, "<pre>{}</pre>", escape(text.trim_end()));
                }
            }
        }
        out.push_str("</body>\n</html>\n");
        out
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
max-width:1100px;margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}\
h1{font-size:1.7em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:0.8em 0;font-size:0.92em}\
th,td{border:1px solid #d0d0d0;padding:0.25em 0.6em}th{background:#f0f0f0}\
td.num{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafafa}\
td code{word-break:break-all}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.9em}\
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;white-space:pre-wrap}\
.figures{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0.5em 0}\
figure svg{max-width:100%;height:auto}figcaption{font-size:0.85em;color:#555}\
@media print{body{max-width:none;margin:0}h2{break-after:avoid}\
table,figure{break-inside:avoid}tr:nth-child(even) td{background:none}}";

fn markdown_table(out: &mut String, table: &Table) {
    let cell = |s: &str| s.replace('|', "\\|");
    let _ = writeln!(
        out,
        "| {} |",
        table
            .header
            .iter()
            .map(|h| cell(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let rule: Vec<&str> = (0..table.header.len())
        .map(|i| {
            if i >= table.numeric_from {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    let _ = writeln!(out, "|{}|", rule.join("|"));
    for row in &table.rows {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        );
    }
}

fn html_table(out: &mut String, table: &Table) {
    out.push_str("<table>\n<thead><tr>");
    for h in &table.header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let class = if i >= table.numeric_from {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", inline_code(&escape(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `code` spans (already escaped text) become `<code>` elements.
fn inline_code(escaped: &str) -> String {
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(start) => &svg[start..],
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Document {
        Document {
            title: "T <1>".into(),
            blocks: vec![
                Block::Heading(2, "Clean".into()),
                Block::Table(Table {
                    header: vec!["metric".into(), "a|b".into()],
                    rows: vec![vec!["top-1".into(), "76.20".into()]],
                    numeric_from: 1,
                }),
                Block::Paragraph("run `robust-eval suite run ci`".into()),
            ],
        }
    }

    #[test]
    fn markdown_escapes_pipes_and_aligns_numbers() {
        let md = sample().markdown();
        assert!(
            md.contains("| metric | a\\|b |\n|---|---:|\n| top-1 | 76.20 |"),
            "{md}"
        );
    }

    #[test]
    fn html_is_escaped_and_has_no_script() {
        let html = sample().html();
        assert!(html.contains("<h1>T &lt;1&gt;</h1>"));
        assert!(html.contains("<td class=\"num\">76.20</td>"));
        assert!(html.contains("<code>robust-eval suite run ci</code>"));
        assert!(!html.contains("<script"));
    }
}
