//! Values that must never be printed: tokens, passwords, keys. A [`Secret`] shows as `***`
//! in `Debug` and has no `Display`; the one way to the value is [`Secret::expose`], at the
//! place it is sent. URLs are printed only through [`redacted`].

/// A token, password or key from the config.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A URL as it may be logged: user and password removed, query values replaced by `***`
/// (`?token=…` is a common way to pass a secret).
pub fn redacted(url: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(url) else {
        return "<url>".to_owned();
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, _)| (k.into_owned(), "***".to_owned()))
        .collect();
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.set_fragment(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_urls_print_without_their_secret_parts() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
        assert_eq!(
            redacted("https://user:hunter2@sms.example/send?token=abc&x=1#frag"),
            "https://sms.example/send?token=***&x=***"
        );
        assert_eq!(redacted("not a url hunter2"), "<url>");
    }
}
