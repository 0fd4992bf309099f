//! Validated, normalised addresses. A `PhoneNumber` is E.164; an `EmailAddress` is a
//! pragmatic subset of RFC 5322 with its domain lower-cased so that grouping is stable.

use std::fmt;

/// An E.164 phone number: `+`, a non-zero country digit, 8 to 15 digits in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts common formatting (spaces, dashes, dots, parentheses) around an E.164 number.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        let Some(rest) = trimmed.strip_prefix('+') else {
            return Err("must be an E.164 phone number starting with '+'");
        };
        let mut digits = String::with_capacity(16);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err("must contain only digits after '+'"),
            }
        }
        let count = digits.len() - 1;
        if !(8..=15).contains(&count) {
            return Err("must have between 8 and 15 digits");
        }
        if digits.as_bytes()[1] == b'0' {
            return Err("country code cannot start with 0");
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address `local@domain` with the domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err("must be an email address like name@example.com");
        };
        if local.is_empty() || local.len() > 64 {
            return Err("local part must be 1 to 64 characters");
        }
        let local_ok = local.chars().all(|c| {
            c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c) || !c.is_ascii()
        });
        if !local_ok || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err("local part contains invalid characters");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err("domain must contain a dot");
        }
        let labels_ok = labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        });
        if !labels_ok {
            return Err("domain is not valid");
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The two address families a conversation can live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelFamily {
    Phone,
    Email,
}

impl ChannelFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::Email => "email",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "phone" => Some(Self::Phone),
            "email" => Some(Self::Email),
            _ => None,
        }
    }
}

/// Either kind of address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Phone(PhoneNumber),
    Email(EmailAddress),
}

impl Address {
    /// Guesses the family from the text: anything with an `@` is an email address.
    pub fn parse_any(raw: &str) -> Result<Self, &'static str> {
        if raw.contains('@') {
            EmailAddress::parse(raw).map(Self::Email)
        } else {
            PhoneNumber::parse(raw).map(Self::Phone)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Phone(p) => p.as_str(),
            Self::Email(e) => e.as_str(),
        }
    }

    pub fn family(&self) -> ChannelFamily {
        match self {
            Self::Phone(_) => ChannelFamily::Phone,
            Self::Email(_) => ChannelFamily::Email,
        }
    }

    /// A form safe for logs at INFO: keeps enough to correlate, hides the person.
    pub fn masked(&self) -> String {
        mask(self.as_str())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Masks a phone number (`+1555***4567`) or email address (`j***@example.com`).
pub fn mask(raw: &str) -> String {
    if let Some((local, domain)) = raw.rsplit_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() <= 6 {
        return "***".to_owned();
    }
    let head: String = chars[..5.min(chars.len() - 4)].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised_to_e164() {
        assert_eq!(
            PhoneNumber::parse("+1 (555) 123-4567").unwrap().as_str(),
            "+15551234567"
        );
        assert_eq!(
            PhoneNumber::parse(" +447911123456 ").unwrap().as_str(),
            "+447911123456"
        );
    }

    #[test]
    fn phone_numbers_without_plus_or_with_letters_are_rejected() {
        for bad in [
            "15551234567",
            "+1555abc4567",
            "+0123456789",
            "+1234567",
            "+1234567890123456",
            "+",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn email_domains_are_lower_cased_but_local_parts_kept() {
        let e = EmailAddress::parse("John.Doe@Example.COM").unwrap();
        assert_eq!(e.as_str(), "John.Doe@example.com");
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "plainaddress",
            "@example.com",
            "a@b",
            "a..b@example.com",
            "a@-x.com",
            "a b@example.com",
            "a@exa mple.com",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn masking_hides_the_middle_of_numbers_and_local_parts() {
        assert_eq!(mask("+15551234567"), "+1555***4567");
        assert_eq!(mask("jane@example.com"), "j***@example.com");
        assert_eq!(mask("+123"), "***");
    }

    #[test]
    fn address_family_follows_the_at_sign() {
        assert_eq!(
            Address::parse_any("a@example.com").unwrap().family(),
            ChannelFamily::Email
        );
        assert_eq!(
            Address::parse_any("+15551234567").unwrap().family(),
            ChannelFamily::Phone
        );
    }
}
