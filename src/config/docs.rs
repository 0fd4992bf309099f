//! The API's own documentation: `GET /openapi.json` and the docs page `GET /docs`.

use super::{ConfigError, Env, Environment};

/// `API_DOCS_ENABLED`: serve the OpenAPI document and the docs page. On by default, off by
/// default in production (where it may be turned on explicitly).
pub fn api_docs_enabled(env: &Env, environment: Environment) -> Result<bool, ConfigError> {
    env.flag("API_DOCS_ENABLED", environment != Environment::Production)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_are_on_by_default_and_off_by_default_in_production() {
        let none = Env::from_pairs(Vec::<(String, String)>::new());
        assert!(api_docs_enabled(&none, Environment::Development).unwrap());
        assert!(!api_docs_enabled(&none, Environment::Production).unwrap());
        let on = Env::from_pairs([("API_DOCS_ENABLED", "true")]);
        assert!(api_docs_enabled(&on, Environment::Production).unwrap());
        let off = Env::from_pairs([("API_DOCS_ENABLED", "false")]);
        assert!(!api_docs_enabled(&off, Environment::Development).unwrap());
        let bad = Env::from_pairs([("API_DOCS_ENABLED", "maybe")]);
        let err = api_docs_enabled(&bad, Environment::Development).unwrap_err();
        assert!(err.to_string().contains("API_DOCS_ENABLED"), "{err}");
    }
}
