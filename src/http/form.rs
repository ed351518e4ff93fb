//! `application/x-www-form-urlencoded`, both ways: query strings and form bodies in, Exotel's
//! form fields out.

/// Splits `a=1&b=x+y` into decoded pairs; a key without `=` gets an empty value.
pub fn parse(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decodes and turns `+` into a space; a malformed escape is kept as it is.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Appends `key=value` (encoded) to `out`, with `&` before it unless `out` is empty.
pub fn append_pair(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    encode_into(out, key);
    out.push('=');
    encode_into(out, value);
}

/// Percent-encodes everything but `A-Z a-z 0-9 - . _ ~`; a space becomes `%20` so the result is
/// valid both in a form body and in a URL query.
pub fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
        }
    }
}

/// The text fields of a `multipart/form-data` body (what Exotel sends a status callback as
/// when `/call` asked for `statusCallbackContentType: multipart/form-data`), given the
/// `Content-Type` header with its `boundary`. Parts that are files are skipped. `None` when the
/// boundary is missing or the body does not start with it.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<(String, String)>> {
    let boundary = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })?;
    if boundary.is_empty() || boundary.len() > 200 {
        return None;
    }
    let delimiter = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let mut parts = text.split(delimiter.as_str());
    // Before the first delimiter: only a preamble, which must not hold a part.
    parts.next()?;
    let mut fields = Vec::new();
    for part in parts {
        if part.starts_with("--") {
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'))
            .unwrap_or(part);
        let (head, value) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))?;
        let disposition = head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-disposition")
                .then_some(value)
        })?;
        let param = |wanted: &str| {
            disposition.split(';').skip(1).find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(wanted)
                    .then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        if param("filename").is_some() {
            continue;
        }
        let Some(name) = param("name") else { continue };
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(value);
        fields.push((name, value.to_owned()));
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        assert_eq!(
            parse("From=%2B919876543210&CallerId=0801+234&flag&x=%zz%4"),
            vec![
                ("From".into(), "+919876543210".into()),
                ("CallerId".into(), "0801 234".into()),
                ("flag".into(), "".into()),
                ("x".into(), "%zz%4".into()),
            ]
        );
    }

    #[test]
    fn encodes_what_decode_reads_back() {
        let mut s = String::new();
        append_pair(&mut s, "Url", "http://my.exotel.com/a/exoml/start_voice/1");
        append_pair(&mut s, "From", "+91 98");
        assert_eq!(
            s,
            "Url=http%3A%2F%2Fmy.exotel.com%2Fa%2Fexoml%2Fstart_voice%2F1&From=%2B91%2098"
        );
        assert_eq!(
            parse(&s),
            vec![
                (
                    "Url".into(),
                    "http://my.exotel.com/a/exoml/start_voice/1".into()
                ),
                ("From".into(), "+91 98".into())
            ]
        );
    }
}
