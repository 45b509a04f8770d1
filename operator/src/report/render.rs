//! The report as a person reads it: plain text for a terminal, Markdown for a ticket or a
//! customer. Timestamps in the evidence gain their age at the time of rendering.

use super::{Report, Verdict};
use k8s_openapi::jiff::Timestamp;
use std::fmt::Write as _;

fn mark(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Kept => "KEPT",
        Verdict::Broken => "BROKEN",
        Verdict::NotApplicable => "N/A",
        Verdict::Unknown => "UNKNOWN",
    }
}

/// `line` with every RFC 3339 timestamp in it followed by its age (`(3h ago)`, `(in 2d)`),
/// and no control character (no terminal escape reaches the reader's terminal).
fn with_ages(line: &str, now: Timestamp) -> String {
    let line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = String::new();
    for word in line.split(' ') {
        if !out.is_empty() {
            out.push(' ');
        }
        let bare = word.trim_end_matches([',', ';', ')']);
        out.push_str(word);
        if let Ok(at) = bare.parse::<Timestamp>() {
            let _ = write!(out, " ({})", age(at, now));
        }
    }
    out
}

/// How long ago (or how soon) `at` is, in its largest unit.
#[must_use]
pub fn age(at: Timestamp, now: Timestamp) -> String {
    let seconds = now.as_second() - at.as_second();
    let magnitude = seconds.unsigned_abs();
    let amount = match magnitude {
        0..60 => format!("{magnitude}s"),
        60..3600 => format!("{}m", magnitude / 60),
        3600..86_400 => format!("{}h", magnitude / 3600),
        _ => format!("{}d", magnitude / 86_400),
    };
    if seconds >= 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

fn heading(report: &Report) -> String {
    format!(
        "{}{}: phase {}, {} (spec generation {})",
        report.tenant,
        report
            .display_name
            .as_ref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
        report
            .phase
            .map_or_else(|| "unknown".into(), |p| format!("{p:?}")),
        report.summary,
        report
            .observed_generation
            .map_or_else(|| "not observed".into(), |g| g.to_string())
    )
}

/// The report as plain text, at `now`.
#[must_use]
pub fn text(report: &Report, now: Timestamp) -> String {
    let mut out = format!("{}\n", heading(report));
    for p in &report.promises {
        let _ = writeln!(out, "\n{:<4} {:<8} {}", p.id, mark(p.verdict), p.promise);
        let _ = writeln!(out, "              {}", with_ages(&p.why, now));
        for e in &p.evidence {
            let _ = writeln!(out, "              - {}", with_ages(e, now));
        }
    }
    out
}

/// The report as Markdown, at `now`.
#[must_use]
pub fn markdown(report: &Report, now: Timestamp) -> String {
    let mut out = format!("# Compliance report: {}\n\n", heading(report));
    out.push_str("| id | promise | verdict | why |\n|----|---------|---------|-----|\n");
    for p in &report.promises {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            p.id,
            p.promise,
            mark(p.verdict),
            markdown_text(&with_ages(&p.why, now))
        );
    }
    for p in report.promises.iter().filter(|p| !p.evidence.is_empty()) {
        let _ = writeln!(out, "\n## {}: {}\n", p.id, p.promise);
        for e in &p.evidence {
            let _ = writeln!(out, "- {}", markdown_text(&with_ages(e, now)));
        }
    }
    out
}

/// `text` with Markdown's markup characters escaped: evidence is data, never formatting.
fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\`*_{}[]<>#|!".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
