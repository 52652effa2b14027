//! What an attempt came to, for every channel.

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver accepted it (any 2xx; SMTP 250).
    Delivered,
    /// Worth trying again later (timeouts, connection errors, 408, 429,
    /// 5xx, transient SMTP replies).
    Retry(String),
    /// Will never succeed as configured (other 4xx, refused destinations,
    /// permanent SMTP replies): dead at once.
    Dead(String),
}

impl Attempt {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Attempt::Delivered => "delivered",
            Attempt::Retry(_) => "retry",
            Attempt::Dead(_) => "dead",
        }
    }
}

/// An HTTP receiver's answer: any 2xx is delivered; 4xx other than 408
/// (timeout) and 429 (slow down) is the receiver telling us the request
/// itself is wrong (gone, forbidden, bad URL), so retrying cannot help.
pub fn classify_status(status: u16) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 => Attempt::Retry(format!("HTTP {status}")),
        400..=499 => Attempt::Dead(format!("HTTP {status}")),
        _ => Attempt::Retry(format!("HTTP {status}")),
    }
}

/// A transport error, as text that is safe to store and show: the URL is
/// stripped (a Slack webhook URL is itself a secret).
pub fn classify_transport(err: reqwest::Error) -> Attempt {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let err = err.without_url();
    // The source chain names the cause (refused address, DNS, TLS).
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    Attempt::Retry(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        for s in [200, 201, 204, 299] {
            assert_eq!(classify_status(s), Attempt::Delivered);
        }
        for s in [408, 429, 500, 502, 503, 504, 301, 302, 100] {
            assert!(matches!(classify_status(s), Attempt::Retry(_)), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422] {
            assert!(matches!(classify_status(s), Attempt::Dead(_)), "{s}");
        }
    }
}
