//! Hetzner's label selectors (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
//! `k notin (a,b)`, comma-separated and all required), for `GET /v1/servers` and `/v1/images`.

use serde_json::Value;

/// Whether `labels` (a JSON object of strings) satisfies `selector`; `Err` if the selector
/// does not parse (the API answers `invalid_input`).
pub fn matches(labels: &Value, selector: &str) -> Result<bool, String> {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    let mut ok = true;
    for term in split_terms(selector) {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        let hit = if let Some(k) = term.strip_prefix('!') {
            get(k.trim()).is_none()
        } else if let Some((k, v)) = term.split_once("!=") {
            get(k.trim()) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k.trim()) == Some(v.trim())
        } else if let Some((k, set)) = split_set(term, " notin ") {
            get(k).is_none_or(|v| !set.contains(&v))
        } else if let Some((k, set)) = split_set(term, " in ") {
            get(k).is_some_and(|v| set.contains(&v))
        } else if term.contains(['(', ')', ' ']) {
            return Err(format!("invalid label selector term {term:?}"));
        } else {
            get(term).is_some()
        };
        ok &= hit;
    }
    Ok(ok)
}

/// Commas outside parentheses separate terms.
fn split_terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_set<'a>(term: &'a str, op: &str) -> Option<(&'a str, Vec<&'a str>)> {
    let (k, rest) = term.split_once(op)?;
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some((k.trim(), inner.split(',').map(str::trim).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_forms() {
        let l = json!({"pool": "edge", "role": "node"});
        for (sel, want) in [
            ("pool=edge", true),
            ("pool==edge,role=node", true),
            ("pool!=edge", false),
            ("pool", true),
            ("!pool", false),
            ("!zone", true),
            ("pool in (edge, game)", true),
            ("role notin (node)", false),
            ("pool=edge,zone", false),
            ("", true),
        ] {
            assert_eq!(matches(&l, sel).unwrap(), want, "{sel}");
        }
        assert!(matches(&l, "pool (x").is_err());
    }
}
