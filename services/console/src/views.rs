//! The page templates (minijinja, auto-escaping every value: the names come from other
//! systems), embedded in the binary.

use anyhow::Context;
use minijinja::{AutoEscape, Environment};

const TEMPLATES: [(&str, &str); 8] = [
    ("timeline", include_str!("../templates/timeline.html")),
    ("base.html", include_str!("../templates/base.html")),
    ("invoices.html", include_str!("../templates/invoices.html")),
    ("customer.html", include_str!("../templates/customer.html")),
    ("invoice.html", include_str!("../templates/invoice.html")),
    ("aging.html", include_str!("../templates/aging.html")),
    (
        "effectiveness.html",
        include_str!("../templates/effectiveness.html"),
    ),
    ("tasks.html", include_str!("../templates/tasks.html")),
];

pub fn templates() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    // HTML escaping for every template, whatever its name.
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    for (name, source) in TEMPLATES
        .into_iter()
        .chain(crate::dead_letters::TEMPLATES)
        .chain(crate::approvals::TEMPLATES)
    {
        env.add_template(name, source)
            .with_context(|| format!("loading the console template {name}"))?;
    }
    env.add_filter("short_time", short_time);
    env.add_filter("summary", summary);
    env.add_filter("share", share);
    env.add_filter("urlencode", |s: String| crate::pages::url_encode(&s));
    Ok(env)
}

/// `2026-03-02T06:00:00Z` as `2026-03-02 06:00`.
fn short_time(value: Option<String>) -> String {
    let Some(v) = value else {
        return String::new();
    };
    match chrono::DateTime::parse_from_rfc3339(&v) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => v,
    }
}

/// A journal entry's detail in one short line: its plain fields, `key: value`.
fn summary(detail: minijinja::Value) -> String {
    let json: serde_json::Value = serde_json::to_value(&detail).unwrap_or_default();
    let Some(fields) = json.as_object() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (key, value) in fields {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        if key.ends_with("sha256") || key == "message_id" || key == "smtp_response" {
            continue;
        }
        parts.push(format!("{key}: {text}"));
    }
    let line = parts.join(" · ");
    if line.chars().count() > 240 {
        format!("{}…", line.chars().take(240).collect::<String>())
    } else {
        line
    }
}

/// `count` of `total` as a percentage and the count, e.g. `40 % (2)`.
fn share(count: i64, total: i64) -> String {
    if total <= 0 {
        return "-".to_string();
    }
    format!("{} % ({count})", (count * 100 + total / 2) / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let env = templates().unwrap();
        let mut env = env;
        env.add_template("t.html", "{{ name }}").unwrap();
        let out = env
            .get_template("t.html")
            .unwrap()
            .render(minijinja::context! { name => "<script>alert(1)</script>" })
            .unwrap();
        assert_eq!(out, "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;");
    }
}
