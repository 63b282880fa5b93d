//! Did-you-mean: the known name nearest to one that is not known.

/// The known name closest to `name` (ASCII case and `-` for `_` aside), if one is close enough
/// to be a likely typo, or `name` is it without its suffix (`lifetime` for `lifetime_secs`).
pub fn nearest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name = name.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| {
            let candidate = k.to_ascii_lowercase().replace('-', "_");
            let typo = strsim::normalized_damerau_levenshtein(&name, &candidate);
            // A unit left off (`lifetime` for `lifetime_secs`) is as likely as a typo.
            let unit_left_off = candidate.starts_with(&format!("{name}_"));
            (*k, if unit_left_off { typo.max(0.7) } else { typo })
        })
        .filter(|(_, score)| *score >= 0.7)
        .fold(None, |best: Option<(&str, f64)>, candidate| match best {
            Some(b) if b.1 >= candidate.1 => Some(b),
            _ => Some(candidate),
        })
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_its_name_and_a_stranger_finds_none() {
        let known = ["lifetime_secs", "leeway_secs", "session_lifetime_secs"];
        assert_eq!(nearest("lifetime_sec", &known), Some("lifetime_secs"));
        assert_eq!(nearest("Leeway-Secs", &known), Some("leeway_secs"));
        assert_eq!(nearest("colour", &known), None);
        assert_eq!(nearest("lifetime", &known), Some("lifetime_secs"));
        assert_eq!(nearest("session", &known), Some("session_lifetime_secs"));
        assert_eq!(nearest("time", &known), None);
        // Names as people write them: case aside on both sides.
        let groups = ["Developers", "Operators", "All Users"];
        assert_eq!(nearest("Develpers", &groups), Some("Developers"));
        assert_eq!(nearest("all users", &groups), Some("All Users"));
    }
}
