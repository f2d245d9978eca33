//! `${Name}` DefinitionSubstitutions, as AWS SAM applies them.

use std::collections::HashMap;

/// Replaces every `${Name}` whose name is in `values`; unknown names are left as is
/// (SAM leaves them too, and the definition then fails validation where it matters).
pub fn substitute(definition: &str, values: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(definition.len());
    let mut rest = definition;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if values.contains_key(&after[..end]) => {
                out.push_str(values.get(&after[..end]).map(String::as_str).unwrap_or(""));
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_known_names_only() {
        let mut m = HashMap::new();
        m.insert("Topic".to_string(), "arn:aws:sns:x".to_string());
        assert_eq!(
            substitute("a ${Topic} ${Other} ${", &m),
            "a arn:aws:sns:x ${Other} ${"
        );
    }
}
