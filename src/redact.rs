//! Credential redaction for anything that is logged, stored or shown: one
//! function, [`secrets`], used wherever a URL or an error that may carry
//! one (reqwest, rumqttc, PostgreSQL) leaves the process.
//!
//! It masks, in any text:
//! - the password of a URL's userinfo (`mqtt://user:***@host`);
//! - every query value of a URL except a few known harmless ones
//!   (`?key=***`, `?access_token=***`: chat-robot URLs carry their secret
//!   in the query);
//! - `password=VALUE` in a PostgreSQL keyword connection string.

/// Query keys whose values are not secret and help when reading an error.
const HARMLESS_KEYS: &[&str] = &[
    "sslmode",
    "client_id",
    "connect_timeout",
    "application_name",
];

/// What replaces a secret.
pub const MASK: &str = "***";

/// `text` with every URL's password and query values (except
/// [`HARMLESS_KEYS`]) and every `password=` keyword value replaced by
/// [`MASK`]. Text without secrets comes back unchanged.
pub fn secrets(text: &str) -> String {
    let masked = mask_keyword_passwords(text);
    let mut out = String::with_capacity(masked.len());
    let mut rest = masked.as_str();
    while let Some(sep) = rest.find("://") {
        let start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[sep + 3..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')'))
            .map_or(rest.len(), |i| sep + 3 + i);
        out.push_str(&rest[..start]);
        mask_url(&rest[start..end], sep - start, &mut out);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Appends `url` (whose `://` is at `sep`) to `out` with its userinfo
/// password and query values masked.
fn mask_url(url: &str, sep: usize, out: &mut String) {
    let after = sep + 3;
    let mut auth_end = url[after..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after + i);
    // A password with an unescaped `/` in it: the last `@` before the query
    // ends the userinfo (a path with an `@` and a `:` before it is masked
    // too much, never too little).
    let before_query = url[after..]
        .find(['?', '#'])
        .map_or(url.len(), |i| after + i);
    if let Some(at) = url[after..before_query].rfind('@')
        && url[after..after + at].contains(':')
    {
        auth_end = auth_end.max(after + at + 1);
    }
    let authority = &url[after..auth_end];
    out.push_str(&url[..after]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(c) => {
                    out.push_str(&userinfo[..c + 1]);
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &url[auth_end..];
    let Some(q) = tail.find('?') else {
        out.push_str(tail);
        return;
    };
    out.push_str(&tail[..q + 1]);
    let query_and_fragment = &tail[q + 1..];
    let (query, fragment) = match query_and_fragment.find('#') {
        Some(h) => query_and_fragment.split_at(h),
        None => (query_and_fragment, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() && !HARMLESS_KEYS.contains(&k) => {
                out.push_str(k);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
}

/// Masks `password=VALUE` (a keyword connection string; VALUE bare or in
/// single quotes) where `password` starts a word.
fn mask_keyword_passwords(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(KEY) {
        let k = pos + found;
        let v = k + KEY.len();
        let word_start = k == 0 || !text[..k].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        // Inside a URL query the URL pass masks it (and `&password=` is not
        // at a word start after `&` only by accident): skip those here.
        let in_query = text[..k].ends_with(['?', '&']);
        if !word_start || in_query {
            out.push_str(&text[pos..v]);
            pos = v;
            continue;
        }
        out.push_str(&text[pos..v]);
        let value_end = if text[v..].starts_with('\'') {
            let mut end = text.len();
            let mut escaped = false;
            for (i, c) in text[v + 1..].char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = v + 1 + i + 1;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            end
        } else {
            text[v..]
                .find(|c: char| c.is_whitespace() || c == ')' || c == '"')
                .map_or(text.len(), |i| v + i)
        };
        if value_end > v {
            out.push_str(MASK);
        }
        pos = value_end;
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_user_names_kept() {
        assert_eq!(
            secrets("mqtt://ingest:s3cret@broker:1883"),
            "mqtt://ingest:***@broker:1883"
        );
        assert_eq!(
            secrets("postgres://u:p%40ss@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(secrets("postgres://u@db/x"), "postgres://u@db/x");
        // An unescaped `/` in the password.
        assert_eq!(
            secrets("mqtt://u:pa/ss@broker:1883"),
            "mqtt://u:***@broker:1883"
        );
        // An `@` in the path is not userinfo.
        assert_eq!(secrets("https://h/a@b?key=K"), "https://h/a@b?key=***");
    }

    #[test]
    fn chat_robot_query_secrets_are_masked() {
        let wecom = "error sending request for url \
                     (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx)";
        assert_eq!(
            secrets(wecom),
            "error sending request for url \
             (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***)"
        );
        let ding = "POST https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1&sign=x%2By refused";
        assert_eq!(
            secrets(ding),
            "POST https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=***&sign=*** refused"
        );
        assert!(!secrets(ding).contains("abc"));
    }

    #[test]
    fn query_passwords_and_keyword_passwords_are_masked() {
        assert_eq!(
            secrets("postgres://db/x?user=u&password=hunter2&sslmode=require"),
            "postgres://db/x?user=***&password=***&sslmode=require"
        );
        assert_eq!(
            secrets("host=db user=u password=hunter2 dbname=x"),
            "host=db user=u password=*** dbname=x"
        );
        assert_eq!(
            secrets("host=db PASSWORD='a b\\' c' dbname=x"),
            "host=db PASSWORD=*** dbname=x"
        );
        // Not a keyword: part of a longer word.
        assert_eq!(secrets("old_password=x"), "old_password=x");
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for s in [
            "",
            "plain words",
            "http://127.0.0.1:8080/api/alerts",
            "sqlite:data/minewatch.db",
            "a://",
            "://x",
            "mqtt://h:1883?client_id=minewatch",
            "人 https://例子.cn/路径 人",
        ] {
            assert_eq!(secrets(s), s);
        }
    }

    #[test]
    fn several_urls_in_one_text_are_each_masked() {
        assert_eq!(
            secrets("a mqtt://u:p@h then \"https://x/y?token=t\" end"),
            "a mqtt://u:***@h then \"https://x/y?token=***\" end"
        );
    }
}
