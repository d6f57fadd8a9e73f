//! Lays out a letter on A4 pages and writes it as PDF with krilla, in the DejaVu fonts
//! shipped in `fonts/` (embedded in the binary, subset in each PDF: nothing is read or
//! downloaded at run time). Owns page geometry and line breaking; the words come from the
//! letter templates, the facts from the renderer. A document may also carry tables (the
//! statement of account's invoices, payments and totals).

use anyhow::{anyhow, Context};
use krilla::geom::{PathBuilder, Point};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, TextDirection};
use krilla::Document;
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

const REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// A4 in points.
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
const MARGIN: f32 = 56.7; // 2 cm
const BOTTOM: f32 = PAGE_HEIGHT - 70.0;
/// The address sits where the window of a French DL envelope shows it (110 mm, 50 mm).
const ADDRESS_X: f32 = 311.8;
const ADDRESS_Y: f32 = 141.7;
const BODY_SIZE: f32 = 9.5;
const LINE: f32 = 13.0;

/// Everything a letter shows, already in the reader's language.
#[derive(Debug, Clone, Default)]
pub struct Letter {
    pub title: String,
    pub language: String,
    /// Sender block, top left; the first line in bold.
    pub letterhead: Vec<String>,
    /// Recipient block, in the envelope window.
    pub recipient: Vec<String>,
    /// e.g. "Lettre recommandée avec accusé de réception".
    pub mention: Option<String>,
    /// "Paris, le 12/03/2026".
    pub place_and_date: String,
    /// "Objet : ..."
    pub subject: String,
    /// (label, value) rows: invoice number, dates, amounts.
    pub references: Vec<(String, String)>,
    /// Tables, after the references and before the paragraphs.
    pub tables: Vec<Table>,
    /// Paragraphs; a single newline inside one is kept as a line break.
    pub paragraphs: Vec<String>,
    /// Footer text, left of the page number.
    pub footer: String,
}

/// A table: a bold heading, a header row, rows, and the last `bold_rows` rows in bold
/// (totals). The first `left_columns` columns (at least one) are aligned left, the others
/// right (amounts).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub heading: String,
    pub columns: Vec<String>,
    /// Each column's share of the text width; they should add up to 1 at most.
    pub widths: Vec<f32>,
    pub rows: Vec<Vec<String>>,
    pub bold_rows: usize,
    pub left_columns: usize,
}

const TABLE_SIZE: f32 = 7.5;
const TABLE_LINE: f32 = 11.0;

#[derive(Clone, Copy)]
enum Weight {
    Regular,
    Bold,
}

struct Placed {
    page: usize,
    x: f32,
    y: f32,
    size: f32,
    weight: Weight,
    text: String,
}

/// Measures text with the fonts' advance widths (no kerning: a little slack on the right).
struct Measure<'a> {
    regular: FontRef<'a>,
    bold: FontRef<'a>,
}

impl Measure<'_> {
    fn width(&self, text: &str, size: f32, weight: Weight) -> f32 {
        let font = match weight {
            Weight::Regular => &self.regular,
            Weight::Bold => &self.bold,
        };
        let charmap = font.charmap();
        let metrics = font.glyph_metrics(Size::new(size), LocationRef::default());
        text.chars()
            .map(|c| {
                charmap
                    .map(c)
                    .and_then(|glyph| metrics.advance_width(glyph))
                    .unwrap_or(size * 0.6)
            })
            .sum()
    }

    /// Greedy line breaking at spaces; a word longer than the line is cut.
    fn wrap(&self, text: &str, size: f32, weight: Weight, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for hard_line in text.lines() {
            let mut line = String::new();
            for word in hard_line.split(' ') {
                let candidate = if line.is_empty() {
                    word.to_string()
                } else {
                    format!("{line} {word}")
                };
                if self.width(&candidate, size, weight) <= width || line.is_empty() {
                    line = candidate;
                } else {
                    lines.push(std::mem::take(&mut line));
                    line = word.to_string();
                }
                while self.width(&line, size, weight) > width && line.chars().count() > 1 {
                    let mut cut = line.clone();
                    while self.width(&cut, size, weight) > width && cut.chars().count() > 1 {
                        cut.pop();
                    }
                    let rest = line[cut.len()..].to_string();
                    lines.push(cut);
                    line = rest;
                }
            }
            lines.push(line);
        }
        lines
    }
}

/// Where the next line goes; starts a new page when the current one is full.
struct Cursor {
    page: usize,
    y: f32,
    placed: Vec<Placed>,
}

impl Cursor {
    fn line(&mut self, x: f32, text: String, size: f32, weight: Weight, height: f32) {
        if self.y + height > BOTTOM {
            self.page += 1;
            self.y = MARGIN + 10.0;
        }
        self.y += height;
        self.placed.push(Placed {
            page: self.page,
            x,
            y: self.y,
            size,
            weight,
            text,
        });
    }
}

fn lay_out(letter: &Letter, measure: &Measure<'_>) -> (Vec<Placed>, usize) {
    let text_width = PAGE_WIDTH - 2.0 * MARGIN;
    let mut c = Cursor {
        page: 0,
        y: MARGIN,
        placed: Vec::new(),
    };
    for (i, line) in letter.letterhead.iter().enumerate() {
        let (size, weight) = if i == 0 {
            (13.0, Weight::Bold)
        } else {
            (9.0, Weight::Regular)
        };
        c.line(
            MARGIN,
            line.clone(),
            size,
            weight,
            if i == 0 { 16.0 } else { 12.0 },
        );
    }
    let letterhead_end = c.y;
    c.y = c.y.max(ADDRESS_Y);
    for (i, line) in letter.recipient.iter().enumerate() {
        let weight = if i == 0 { Weight::Bold } else { Weight::Regular };
        for wrapped in measure.wrap(line, BODY_SIZE, weight, PAGE_WIDTH - MARGIN - ADDRESS_X) {
            c.line(ADDRESS_X, wrapped, BODY_SIZE, weight, LINE);
        }
    }
    c.y = c.y.max(letterhead_end) + 2.0 * LINE;
    let date_x = PAGE_WIDTH - MARGIN - measure.width(&letter.place_and_date, BODY_SIZE, Weight::Regular);
    c.line(
        date_x.max(ADDRESS_X),
        letter.place_and_date.clone(),
        BODY_SIZE,
        Weight::Regular,
        LINE,
    );
    c.y += LINE;
    if let Some(mention) = &letter.mention {
        c.line(MARGIN, mention.clone(), BODY_SIZE, Weight::Bold, LINE);
    }
    for line in measure.wrap(&letter.subject, BODY_SIZE, Weight::Bold, text_width) {
        c.line(MARGIN, line, BODY_SIZE, Weight::Bold, LINE);
    }
    c.y += LINE / 2.0;
    let label_width = letter
        .references
        .iter()
        .map(|(label, _)| measure.width(label, 9.0, Weight::Regular))
        .fold(0.0_f32, f32::max);
    for (label, value) in &letter.references {
        c.line(MARGIN + 10.0, label.clone(), 9.0, Weight::Regular, 12.5);
        let y = c.y;
        c.placed.push(Placed {
            page: c.page,
            x: MARGIN + 24.0 + label_width,
            y,
            size: 9.0,
            weight: Weight::Bold,
            text: value.clone(),
        });
    }
    for table in &letter.tables {
        lay_out_table(&mut c, table, measure);
    }
    for paragraph in &letter.paragraphs {
        c.y += LINE * 0.5;
        let lines = measure.wrap(paragraph, BODY_SIZE, Weight::Regular, text_width);
        // A short paragraph (a signature, a closing line) is not split across pages.
        if lines.len() <= 3 && c.y + LINE * lines.len() as f32 > BOTTOM {
            c.page += 1;
            c.y = MARGIN + 10.0;
        }
        for line in lines {
            c.line(MARGIN, line, BODY_SIZE, Weight::Regular, LINE);
        }
    }
    let pages = c.page + 1;
    (c.placed, pages)
}

/// One row of a table: the first cell through the cursor (which turns the page when full),
/// the others beside it, right-aligned in their columns.
fn table_row(c: &mut Cursor, table: &Table, cells: &[String], weight: Weight, measure: &Measure<'_>) {
    let text_width = PAGE_WIDTH - 2.0 * MARGIN;
    let mut x = MARGIN;
    for (i, cell) in cells.iter().enumerate() {
        let width = table.widths.get(i).copied().unwrap_or(0.1) * text_width;
        if i == 0 {
            c.line(x, cell.clone(), TABLE_SIZE, weight, TABLE_LINE);
        } else {
            let left = if i < table.left_columns {
                x
            } else {
                (x + width - measure.width(cell, TABLE_SIZE, weight)).max(x)
            };
            c.placed.push(Placed {
                page: c.page,
                x: left,
                y: c.y,
                size: TABLE_SIZE,
                weight,
                text: cell.clone(),
            });
        }
        x += width;
    }
}

fn lay_out_table(c: &mut Cursor, table: &Table, measure: &Measure<'_>) {
    c.y += LINE;
    // A heading is not left alone at the foot of a page.
    if c.y + LINE + 3.0 * TABLE_LINE > BOTTOM {
        c.page += 1;
        c.y = MARGIN + 10.0;
    }
    c.line(MARGIN, table.heading.clone(), BODY_SIZE, Weight::Bold, LINE);
    c.y += 2.0;
    table_row(c, table, &table.columns, Weight::Bold, measure);
    let first_bold = table.rows.len().saturating_sub(table.bold_rows);
    for (i, row) in table.rows.iter().enumerate() {
        let weight = if i >= first_bold {
            Weight::Bold
        } else {
            Weight::Regular
        };
        table_row(c, table, row, weight, measure);
    }
}

/// The letter as a PDF document, and its number of pages.
pub fn render(letter: &Letter) -> anyhow::Result<(Vec<u8>, usize)> {
    let measure = Measure {
        regular: FontRef::new(REGULAR).map_err(|e| anyhow!("reading the regular font: {e}"))?,
        bold: FontRef::new(BOLD).map_err(|e| anyhow!("reading the bold font: {e}"))?,
    };
    let regular = Font::new(REGULAR.into(), 0).context("loading the regular font")?;
    let bold = Font::new(BOLD.into(), 0).context("loading the bold font")?;
    let (placed, pages) = lay_out(letter, &measure);

    let mut document = Document::new();
    document.set_metadata(
        krilla::metadata::Metadata::new()
            .title(letter.title.clone())
            .language(letter.language.clone())
            .creator("relance".to_string()),
    );
    let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).context("the A4 page size")?;
    for page_index in 0..pages {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        surface.set_fill(Some(Fill::default()));
        for p in placed.iter().filter(|p| p.page == page_index) {
            let font = match p.weight {
                Weight::Regular => regular.clone(),
                Weight::Bold => bold.clone(),
            };
            surface.draw_text(
                Point::from_xy(p.x, p.y),
                font,
                p.size,
                &p.text,
                false,
                TextDirection::Auto,
            );
        }
        let footer = format!("{} · {}/{}", letter.footer, page_index + 1, pages);
        surface.draw_text(
            Point::from_xy(MARGIN, PAGE_HEIGHT - 40.0),
            regular.clone(),
            7.5,
            &footer,
            false,
            TextDirection::Auto,
        );
        let mut rule = PathBuilder::new();
        rule.move_to(MARGIN, PAGE_HEIGHT - 52.0);
        rule.line_to(PAGE_WIDTH - MARGIN, PAGE_HEIGHT - 52.0);
        if let Some(path) = rule.finish() {
            surface.set_fill(None);
            surface.set_stroke(Some(Stroke {
                width: 0.5,
                ..Stroke::default()
            }));
            surface.draw_path(&path);
            surface.set_stroke(None);
        }
        surface.finish();
        page.finish();
    }
    let pdf = document
        .finish()
        .map_err(|e| anyhow!("writing the PDF failed: {e:?}"))?;
    Ok((pdf, pages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paragraphs_wrap_within_the_margins_and_flow_onto_new_pages() {
        let measure = Measure {
            regular: FontRef::new(REGULAR).unwrap(),
            bold: FontRef::new(BOLD).unwrap(),
        };
        let width = PAGE_WIDTH - 2.0 * MARGIN;
        let text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(20);
        let lines = measure.wrap(&text, BODY_SIZE, Weight::Regular, width);
        assert!(lines.len() > 5, "{lines:?}");
        assert!(lines
            .iter()
            .all(|l| measure.width(l, BODY_SIZE, Weight::Regular) <= width));
        assert_eq!(
            lines.join(" ").split_whitespace().count(),
            text.split_whitespace().count()
        );
        let cut = measure.wrap(&"x".repeat(300), BODY_SIZE, Weight::Regular, width);
        assert!(cut.len() > 1 && cut.concat().len() == 300);

        let letter = Letter {
            letterhead: vec!["Exemple SAS".into()],
            paragraphs: vec![text; 12],
            footer: "Exemple SAS".into(),
            ..Letter::default()
        };
        let (pdf, pages) = render(&letter).unwrap();
        assert!(pdf.starts_with(b"%PDF"));
        assert!(pages >= 2, "{pages}");
    }
}
