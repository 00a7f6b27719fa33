//! Wildcard host patterns such as `*.play.example.com`, matched in O(labels).
//!
//! Patterns are stored in a trie keyed by labels from the right (`com` → `example` → …), so
//! a lookup walks the host's labels once instead of trying every pattern (Gate Lite scans
//! its whole list per connection). Each `*` matches exactly one label and captures it for
//! the backend template (`{1}` is the leftmost capture).

use std::collections::HashMap;

#[derive(Debug)]
pub(crate) struct WildcardTrie<T> {
    root: Node<T>,
}

impl<T> Default for WildcardTrie<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
        }
    }
}

#[derive(Debug)]
struct Node<T> {
    labels: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    value: Option<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            labels: HashMap::new(),
            star: None,
            value: None,
        }
    }
}

impl<T> WildcardTrie<T> {
    /// Inserts `pattern`; returns the previous value if the same pattern was present.
    pub(crate) fn insert(&mut self, pattern: &str, value: T) -> Option<T> {
        let mut node = &mut self.root;
        for label in pattern.rsplit('.') {
            node = if label == "*" {
                node.star.get_or_insert_with(Default::default)
            } else {
                node.labels.entry(label.into()).or_default()
            };
        }
        node.value.replace(value)
    }

    /// Finds the most specific pattern for `host`; exact labels win over `*` at each level.
    /// Returns the value and the captured labels, leftmost first.
    pub(crate) fn lookup<'h>(&self, host: &'h str) -> Option<(&T, Vec<&'h str>)> {
        let labels: Vec<&str> = host.rsplit('.').collect();
        let mut captures = Vec::new();
        let found = Self::walk(&self.root, &labels, &mut captures)?;
        captures.reverse();
        Some((found, captures))
    }

    fn walk<'n, 'h>(
        node: &'n Node<T>,
        labels: &[&'h str],
        caps: &mut Vec<&'h str>,
    ) -> Option<&'n T> {
        let Some((first, rest)) = labels.split_first() else {
            return node.value.as_ref();
        };
        if let Some(child) = node.labels.get(*first) {
            if let Some(v) = Self::walk(child, rest, caps) {
                return Some(v);
            }
        }
        if let Some(star) = &node.star {
            if is_capturable(first) {
                caps.push(first);
                if let Some(v) = Self::walk(star, rest, caps) {
                    return Some(v);
                }
                caps.pop();
            }
        }
        None
    }
}

/// A captured label ends up inside a backend address, so only DNS label characters may be
/// captured: `evil:1234` or `a/b` must never reach the connect call.
fn is_capturable(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_labels_beat_star() {
        let mut t = WildcardTrie::default();
        t.insert("*.play.example.com", 1);
        t.insert("lobby.*.example.com", 2);
        t.insert("*.*.example.com", 3);
        assert_eq!(
            t.lookup("survival.play.example.com"),
            Some((&1, vec!["survival"]))
        );
        assert_eq!(t.lookup("lobby.eu.example.com"), Some((&2, vec!["eu"])));
        assert_eq!(t.lookup("a.b.example.com"), Some((&3, vec!["a", "b"])));
        assert_eq!(t.lookup("play.example.com"), None);
        assert_eq!(t.lookup("x.y.play.example.com"), None);
    }

    #[test]
    fn refuses_unsafe_captures() {
        let mut t = WildcardTrie::default();
        t.insert("*.play.example.com", 1);
        assert!(t.lookup("evil:1234.play.example.com").is_none());
        assert!(t.lookup("a/b.play.example.com").is_none());
    }
}
