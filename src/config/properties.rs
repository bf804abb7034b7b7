//! Java `.properties` files (Confluent's `client.properties`, the workshops' `schema.properties`)
//! and the one Java-only value we translate: `sasl.jaas.config`.
//!
//! Syntax follows `java.util.Properties::load`: `key=value`, `key: value` or `key value`;
//! `#` and `!` start a comment line; blank lines are skipped; a line ending in an odd number of
//! backslashes continues on the next one (whose leading whitespace is dropped); `\t \n \r \f`,
//! `\uXXXX` and `\<any>` escapes. One deliberate difference: trailing unescaped whitespace of a
//! value is trimmed, since a pasted API key with a stray space is never what was meant.

use std::fmt;

/// Why a properties file could not be parsed. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line where the offending logical line starts.
    pub line: usize,
    /// What was wrong.
    pub message: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One `key=value` entry with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// Parses `.properties` text into entries, in file order (a later duplicate wins when collected
/// into a map, as in Java).
pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = split_lines(text);
    let mut entries = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start_line = i + 1;
        let first = lines[i].trim_start_matches(is_ws);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines into one logical line.
        let mut logical = String::from(first);
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.get(i) {
                Some(next) => {
                    logical.push_str(next.trim_start_matches(is_ws));
                    i += 1;
                }
                None => break,
            }
        }
        let (key, value) = split_entry(&logical, start_line)?;
        entries.push(Entry {
            line: start_line,
            key,
            value,
        });
    }
    Ok(entries)
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

fn split_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find(['\n', '\r']) {
        out.push(&rest[..pos]);
        let skip = if rest[pos..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[pos + skip..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace and unescapes both halves.
fn split_entry(line: &str, line_no: usize) -> Result<(String, String), ParseError> {
    let bytes: Vec<char> = line.chars().collect();
    let mut idx = 0;
    let mut key_end = bytes.len();
    while idx < bytes.len() {
        match bytes[idx] {
            '\\' => idx += 2,
            '=' | ':' => {
                key_end = idx;
                break;
            }
            c if is_ws(c) => {
                key_end = idx;
                break;
            }
            _ => idx += 1,
        }
    }
    let key_end = key_end.min(bytes.len());
    let key_raw: String = bytes[..key_end].iter().collect();
    let mut v = key_end;
    while v < bytes.len() && is_ws(bytes[v]) {
        v += 1;
    }
    if v < bytes.len() && (bytes[v] == '=' || bytes[v] == ':') {
        v += 1;
        while v < bytes.len() && is_ws(bytes[v]) {
            v += 1;
        }
    }
    let value_raw: String = bytes[v.min(bytes.len())..].iter().collect();
    let key = unescape(&key_raw, line_no)?.0;
    let (mut value, keep) = unescape(&value_raw, line_no)?;
    // Trim trailing whitespace that was not escaped.
    while value.len() > keep && value.ends_with(is_ws) {
        value.pop();
    }
    Ok((key, value))
}

/// Unescapes; also returns the byte length of the prefix that ends with the last escaped char,
/// so the caller never trims an escaped space.
fn unescape(s: &str, line: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::with_capacity(s.len());
    let mut keep = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else { break };
        match e {
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'f' => out.push('\u{c}'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or(ParseError {
                        line,
                        message: "malformed \\uXXXX escape",
                    })?;
                // Surrogate halves (Java's UTF-16) are replaced rather than rejected.
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            other => out.push(other),
        }
        keep = out.len();
    }
    Ok((out, keep))
}

/// Credentials found in a Java `sasl.jaas.config` line, mapped to librdkafka properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jaas {
    /// PLAIN or SCRAM: `sasl.username` / `sasl.password`.
    UserPassword { username: String, password: String },
    /// OAUTHBEARER with client credentials (OIDC): `sasl.oauthbearer.client.id` and friends.
    OAuthBearer { options: Vec<(String, String)> },
}

/// Why a JAAS line was not understood. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaasError(pub String);

impl fmt::Display for JaasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `<LoginModule> <flag> key="value" key='value' ...;` for the Plain, Scram and
/// OAuthBearer login modules.
pub fn parse_jaas(text: &str) -> Result<Jaas, JaasError> {
    let tokens = tokenize_jaas(text)?;
    let mut it = tokens.into_iter();
    let module = match it.next() {
        Some(Token::Word(w)) => w,
        _ => return Err(JaasError("expected a login module class name".into())),
    };
    match it.next() {
        Some(Token::Word(flag))
            if ["required", "requisite", "sufficient", "optional"]
                .contains(&flag.to_ascii_lowercase().as_str()) => {}
        _ => {
            return Err(JaasError(
                "expected a control flag (`required`) after the login module".into(),
            ));
        }
    }
    let mut options: Vec<(String, String)> = Vec::new();
    loop {
        match it.next() {
            None | Some(Token::Semicolon) => break,
            Some(Token::Word(name)) => {
                if it.next() != Some(Token::Equals) {
                    return Err(JaasError(format!("expected `=` after option `{name}`")));
                }
                match it.next() {
                    Some(Token::Word(v)) | Some(Token::Quoted(v)) => options.push((name, v)),
                    _ => return Err(JaasError(format!("expected a value for option `{name}`"))),
                }
            }
            Some(_) => return Err(JaasError("expected `option=value` pairs".into())),
        }
    }
    let get = |k: &str| {
        options
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let short = module.rsplit('.').next().unwrap_or(&module).to_owned();
    match short.as_str() {
        "PlainLoginModule" | "ScramLoginModule" => {
            let username =
                get("username").ok_or_else(|| JaasError(format!("{short}: no `username`")))?;
            let password =
                get("password").ok_or_else(|| JaasError(format!("{short}: no `password`")))?;
            Ok(Jaas::UserPassword { username, password })
        }
        "OAuthBearerLoginModule" => {
            let mut mapped = Vec::new();
            for (name, value) in &options {
                let key = match name.as_str() {
                    "clientId" => "sasl.oauthbearer.client.id",
                    "clientSecret" => "sasl.oauthbearer.client.secret",
                    "scope" => "sasl.oauthbearer.scope",
                    // Confluent Cloud identity pool / logical cluster go as extensions.
                    n if n.starts_with("extension_") => {
                        mapped.push((
                            "sasl.oauthbearer.extensions".to_owned(),
                            format!("{}={}", &n["extension_".len()..], value),
                        ));
                        continue;
                    }
                    other => {
                        return Err(JaasError(format!(
                            "OAuthBearerLoginModule: option `{other}` has no librdkafka equivalent"
                        )));
                    }
                };
                mapped.push((key.to_owned(), value.clone()));
            }
            // Several extensions are one comma-separated librdkafka property.
            let mut options: Vec<(String, String)> = Vec::new();
            for (k, v) in mapped {
                match options.iter_mut().find(|(ek, _)| *ek == k) {
                    Some((_, ev)) if k == "sasl.oauthbearer.extensions" => {
                        ev.push(',');
                        ev.push_str(&v);
                    }
                    Some((_, ev)) => *ev = v,
                    None => options.push((k, v)),
                }
            }
            Ok(Jaas::OAuthBearer { options })
        }
        _ => Err(JaasError(format!(
            "login module `{module}` is not supported; use PlainLoginModule, ScramLoginModule or \
             OAuthBearerLoginModule, or set the librdkafka `sasl.*` properties directly"
        ))),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn tokenize_jaas(text: &str) -> Result<Vec<Token>, JaasError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                tokens.push(Token::Equals);
            }
            ';' => {
                chars.next();
                tokens.push(Token::Semicolon);
            }
            '"' | '\'' => {
                chars.next();
                let mut value = String::new();
                let mut closed = false;
                while let Some(ch) = chars.next() {
                    match ch {
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some(other) => value.push(other),
                            None => break,
                        },
                        q if q == c => {
                            closed = true;
                            break;
                        }
                        other => value.push(other),
                    }
                }
                if !closed {
                    return Err(JaasError("unterminated quoted value".into()));
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '=' | ';' | '"' | '\'') {
                        break;
                    }
                    word.push(ch);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn separators_comments_blank_lines() {
        let text = "# comment\n! also a comment\n\n  a=1\nb: 2\nc 3\nd = 4 \n e\t:\tfive six\nempty=\nbare\n";
        assert_eq!(
            kv(text),
            pairs(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "4"),
                ("e", "five six"),
                ("empty", ""),
                ("bare", ""),
            ])
        );
    }

    #[test]
    fn continuation_and_escapes() {
        let text = "long = first \\\n       second\\\n   third\nkey\\ with\\=odd\\:chars = v\nuni=caf\\u00e9\\tx\nslash=a\\\\\nnext=1\nspace=keep\\ \n";
        assert_eq!(
            kv(text),
            pairs(&[
                ("long", "first secondthird"),
                ("key with=odd:chars", "v"),
                ("uni", "café\tx"),
                ("slash", "a\\"),
                ("next", "1"),
                ("space", "keep "),
            ])
        );
    }

    #[test]
    fn crlf_bom_and_line_numbers() {
        let entries = parse("\u{feff}# c\r\na=1\r\n\r\nb=2\rc=3").unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.line, e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(got, vec![(2, "a", "1"), (4, "b", "2"), (5, "c", "3")]);
    }

    #[test]
    fn comment_lines_do_not_continue() {
        assert_eq!(kv("# comment \\\na=1\n"), pairs(&[("a", "1")]));
    }

    #[test]
    fn bad_unicode_escape_names_the_line_only() {
        let err = parse("ok=1\nsecret=abc\\u12zz\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(!err.to_string().contains("abc"));
    }

    #[test]
    fn confluent_client_properties() {
        let text = "# Required connection configs for Kafka producer, consumer, and admin\n\
                    bootstrap.servers=pkc-123.us-east-1.aws.confluent.cloud:9092\n\
                    security.protocol=SASL_SSL\n\
                    sasl.mechanisms=PLAIN\n\
                    sasl.username=KEY\n\
                    sasl.password=SECRET\n\n\
                    # Best practice for higher availability in librdkafka clients prior to 1.7\n\
                    session.timeout.ms=45000\n";
        let got = kv(text);
        assert_eq!(got.len(), 6);
        assert_eq!(
            got[0],
            (
                "bootstrap.servers".into(),
                "pkc-123.us-east-1.aws.confluent.cloud:9092".into()
            )
        );
        assert_eq!(got[4], ("sasl.password".into(), "SECRET".into()));
    }

    #[test]
    fn jaas_plain_single_quotes() {
        let j = parse_jaas(
            "org.apache.kafka.common.security.plain.PlainLoginModule required username='KEY' password='S3C:R=T';",
        )
        .unwrap();
        assert_eq!(
            j,
            Jaas::UserPassword {
                username: "KEY".into(),
                password: "S3C:R=T".into()
            }
        );
    }

    #[test]
    fn jaas_scram_double_quotes_and_escapes() {
        let j = parse_jaas(
            "org.apache.kafka.common.security.scram.ScramLoginModule   required\n username=\"alice\"\tpassword=\"p\\\"w d\" ;",
        )
        .unwrap();
        assert_eq!(
            j,
            Jaas::UserPassword {
                username: "alice".into(),
                password: "p\"w d".into()
            }
        );
    }

    #[test]
    fn jaas_oauthbearer() {
        let j = parse_jaas(
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required clientId='id' clientSecret='sec' scope='s' extension_logicalCluster='lkc-1' extension_identityPoolId='pool-2';",
        )
        .unwrap();
        let Jaas::OAuthBearer { options } = j else {
            panic!("not oauth")
        };
        assert_eq!(
            options,
            pairs(&[
                ("sasl.oauthbearer.client.id", "id"),
                ("sasl.oauthbearer.client.secret", "sec"),
                ("sasl.oauthbearer.scope", "s"),
                (
                    "sasl.oauthbearer.extensions",
                    "logicalCluster=lkc-1,identityPoolId=pool-2"
                ),
            ])
        );
    }

    #[test]
    fn jaas_errors_never_echo_values() {
        for bad in [
            "org.apache.kafka.common.security.plain.PlainLoginModule required username='u' password='hunter2",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username='u';",
            "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true keyTab='hunter2';",
            "org.apache.kafka.common.security.plain.PlainLoginModule username='u' password='hunter2';",
            "",
        ] {
            let err = parse_jaas(bad).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
