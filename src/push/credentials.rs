//! Credentials: those a URL carries (`https://user:password@host/...`), taken out of it
//! (and out of every error and log line), and basic auth's encoding of them.

/// `url` with the password of its credentials, if any, left out (for errors and logs).
pub(super) fn redact(url: &str) -> String {
    match parts(url) {
        Some((scheme, Some(userinfo), host, path)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

/// A URL's scheme, credentials (as written), host and port, and the rest.
fn parts(url: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    Some(match authority.rsplit_once('@') {
        Some((userinfo, host)) => (scheme, Some(userinfo), host, path),
        None => (scheme, None, authority, path),
    })
}

/// `url` without its credentials, and the credentials (user and password, decoded); `None`
/// if they cannot be decoded.
pub(super) fn split_credentials(url: &str) -> Option<(String, Option<(String, String)>)> {
    let Some((scheme, Some(userinfo), host, path)) = parts(url) else {
        return Some((url.to_owned(), None));
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let credentials = (percent_decode(user)?, percent_decode(password)?);
    Some((format!("{scheme}://{host}{path}"), Some(credentials)))
}

/// `%XX` sequences decoded (as URLs write reserved characters in credentials); `None` if
/// one is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Standard base64 with padding (RFC 4648), as basic auth sends credentials.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc_4648() {
        for (text, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(text.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn credentials_are_split_decoded_and_redacted() {
        let (url, credentials) = split_credentials("http://a%3Ab:c:d@h:1/p?q").expect("valid");
        assert_eq!(url, "http://h:1/p?q");
        assert_eq!(credentials, Some(("a:b".into(), "c:d".into())));
        assert_eq!(
            split_credentials("http://h/p"),
            Some(("http://h/p".into(), None))
        );
        assert_eq!(split_credentials("http://u:%zz@h/"), None);
        assert_eq!(redact("http://u:%zz@h/p"), "http://u:***@h/p");
        assert_eq!(
            redact("http://h/p@x"),
            "http://h/p@x",
            "an @ past the host is not userinfo"
        );
    }
}
