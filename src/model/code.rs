//! An ODS organisation code given from outside (`odsync run --codes`), checked where it enters.
//!
//! A code from the command line ends up in a URL path (`/organisations/{code}`,
//! `/Organization/{code}`): checked here, a typo such as `RWR/..` or `RWR?x` is an error naming
//! the code before anything is fetched, never a request to another resource.

use serde::Serialize;

/// Longest code accepted. ODS organisation codes are 3 to 10 characters (`RWR`, `RWRA0`,
/// `A81001`, `7A1A1`); the margin keeps a longer future code from being refused.
const MAX_LEN: usize = 16;

/// An ODS code: letters and digits, upper case (ODS codes are; `rwr` is taken as `RWR`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OdsCode(String);

impl OdsCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for OdsCode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let code = s.trim();
        if code.is_empty() {
            return Err("an empty ODS code (a doubled or trailing comma?)".into());
        }
        if code.len() > MAX_LEN || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "`{code}` is not an ODS code: codes are letters and digits only, at most {MAX_LEN} (RWR, RWRA0, A81001)"
            ));
        }
        Ok(OdsCode(code.to_ascii_uppercase()))
    }
}

impl std::fmt::Display for OdsCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_letters_and_digits_in_upper_case() {
        assert_eq!(" rwr ".parse::<OdsCode>().unwrap().as_str(), "RWR");
        assert_eq!("A81001".parse::<OdsCode>().unwrap().to_string(), "A81001");
        for bad in ["", "  ", "RWR/..", "RWR?x=1", "R W R", "RWR%2F", "ÄBC", &"A".repeat(17)] {
            let err = bad.parse::<OdsCode>().unwrap_err();
            assert!(err.contains("ODS code"), "{bad:?}: {err}");
        }
    }
}
