//! Making a driver's or DBHub's message safe to show anywhere (a status, an Event, a log line,
//! an API answer): known secrets replaced (raw and percent-encoded forms are the caller's
//! list), URL user-info (`scheme://user:pass@host`) and `password=…`-style values dropped, and
//! the length capped. One set of rules for the operator and the service.

/// `text` with every secret in `secrets`, URL user-info and password values replaced by `***`,
/// at most `max_chars` characters (an ellipsis marks a cut).
pub fn clean(text: &str, secrets: &[String], max_chars: usize) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "***");
    }
    let out = drop_passwords(&drop_userinfo(&out));
    if out.chars().count() > max_chars {
        return out.chars().take(max_chars).collect::<String>() + "…";
    }
    out
}

/// `scheme://user:pass@host` → `scheme://***@host`.
fn drop_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// `password=s3cret;x` → `password=***` (also `pwd=` and `password:`), word by word.
fn drop_passwords(text: &str) -> String {
    let words: Vec<String> = text
        .split(' ')
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            match ["password=", "pwd=", "password:"]
                .iter()
                .find_map(|k| lower.find(k).map(|p| p + k.len()))
            {
                Some(p) => format!("{}***", &w[..p]),
                None => w.to_string(),
            }
        })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_url_userinfo_and_password_values_are_removed() {
        let secrets = vec!["s3cr/t".to_string(), "s3cr%2Ft".to_string()];
        let m = clean(
            "failed postgres://bob:s3cr%2Ft@h:5432/db with s3cr/t",
            &secrets,
            300,
        );
        assert!(!m.contains("s3cr") && !m.contains("bob"), "{m}");
        assert!(m.contains("postgres://***@h:5432"), "{m}");
        assert_eq!(
            clean(
                "bad dsn 'mysql://u:p@ss:w/rd@h/db' and password=s3cret;x",
                &[],
                300
            ),
            "bad dsn 'mysql://***@h/db' and password=***"
        );
        assert_eq!(
            clean("relation \"orders\" does not exist", &[], 300),
            "relation \"orders\" does not exist"
        );
        assert_eq!(
            clean("see http://host/path", &[], 300),
            "see http://host/path"
        );
    }

    #[test]
    fn long_messages_are_capped() {
        assert_eq!(clean(&"x".repeat(5000), &[], 2000).chars().count(), 2001);
    }
}
