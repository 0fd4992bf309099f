//! Delivery safety settings: how many deliveries a message may take before it is treated as
//! poison.

use super::{ConfigError, Env};

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Claims of one message that may end without a recorded outcome (its worker crashed or
    /// hung) before the message is dead-lettered as `delivery_attempts_exhausted`.
    pub max_deliveries: u32,
}

impl DeliverySettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_deliveries: u32 = env.parse("QUEUE_MAX_DELIVERIES", 10, "a positive integer")?;
        if max_deliveries == 0 {
            return Err(ConfigError(
                "QUEUE_MAX_DELIVERIES must be greater than 0".into(),
            ));
        }
        Ok(Self { max_deliveries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_deliveries_defaults_to_ten_and_refuses_zero() {
        let s = DeliverySettings::from_env(&Env::from_pairs::<_, &str, &str>([])).unwrap();
        assert_eq!(s.max_deliveries, 10);
        let e = DeliverySettings::from_env(&Env::from_pairs([("QUEUE_MAX_DELIVERIES", "0")]));
        assert!(e.unwrap_err().to_string().contains("QUEUE_MAX_DELIVERIES"));
    }
}
