//! Connect's `connector.client.config.override.policy` (KIP-458): which
//! `producer.override.*`, `consumer.override.*` and `admin.override.*` keys a
//! connector may set on its Kafka clients. `None` (the default here) allows
//! none, `Principal` the identity keys, `All` everything but what loads code
//! or reads files on the worker, which no policy lets through.

use super::{ConfigError, ConnectorConfig};

const PREFIXES: [&str; 3] = [
    "producer.override.",
    "consumer.override.",
    "admin.override.",
];

/// librdkafka keys that load a library, run a program, read a file, or make
/// the client call out to a URL: the operator's to set, never a connector's.
const DENIED: &[&str] = &[
    "plugin.library.paths",
    "interceptor.classes",
    "ssl.engine.location",
    "ssl.engine.id",
    "ssl.key.location",
    "ssl.certificate.location",
    "ssl.ca.location",
    "ssl.crl.location",
    "ssl.keystore.location",
    "ssl.truststore.location",
    "ssl.ca.certificate.stores",
    "sasl.kerberos.keytab",
    "sasl.kerberos.kinit.cmd",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.config",
    "sasl.login.callback.handler.class",
    "sasl.client.callback.handler.class",
    "metric.reporters",
];

/// Identity keys the `Principal` policy allows (as Connect's).
const PRINCIPAL: &[&str] = &["sasl.jaas.config", "sasl.mechanism", "security.protocol"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverridePolicy {
    #[default]
    None,
    Principal,
    All,
}

impl OverridePolicy {
    /// Connect's value names; its class names are accepted too.
    pub fn parse(v: &str) -> Option<Self> {
        let v = v.trim();
        let name = v.rsplit('.').next().unwrap_or(v);
        let name = name
            .strip_suffix("ConnectorClientConfigOverridePolicy")
            .unwrap_or(name);
        match name.to_ascii_lowercase().as_str() {
            "none" => Some(OverridePolicy::None),
            "principal" => Some(OverridePolicy::Principal),
            "all" => Some(OverridePolicy::All),
            _ => None,
        }
    }

    /// Every override key of `c` this policy refuses, each with the reason.
    pub fn check(self, c: &ConnectorConfig) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for key in c.config.keys() {
            let Some(client_key) = PREFIXES.iter().find_map(|p| key.strip_prefix(p)) else {
                continue;
            };
            let denied = DENIED.iter().any(|d| client_key.eq_ignore_ascii_case(d))
                || client_key.to_ascii_lowercase().contains("interceptor");
            let reason = if denied {
                Some(format!(
                    "'{client_key}' loads code or reads files on the worker: no connector may set it (the worker config's producer.*/consumer.* may)"
                ))
            } else {
                match self {
                    OverridePolicy::All => None,
                    OverridePolicy::Principal if PRINCIPAL.contains(&client_key) => None,
                    OverridePolicy::Principal => Some(format!(
                        "the worker's connector.client.config.override.policy is Principal: only {} may be overridden",
                        PRINCIPAL.join(", ")
                    )),
                    OverridePolicy::None => Some(
                        "the worker's connector.client.config.override.policy is None: connectors may not override Kafka client settings (set it to Principal or All in the worker config)".into(),
                    ),
                }
            };
            if let Some(r) = reason {
                errors.push(c.key_error(key, r));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(pairs: &[(&str, &str)]) -> ConnectorConfig {
        ConnectorConfig {
            name: "c".into(),
            config: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            origin: "test".into(),
            secret_keys: Default::default(),
        }
    }

    #[test]
    fn none_refuses_every_override_and_all_refuses_what_loads_code() {
        let c = connector(&[
            ("producer.override.linger.ms", "10"),
            ("consumer.override.plugin.library.paths", "/tmp/evil.so"),
            ("topic", "t"),
        ]);
        assert_eq!(OverridePolicy::None.check(&c).len(), 2);
        let all = OverridePolicy::All.check(&c);
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(all[0].to_string().contains("plugin.library.paths"));
        let c = connector(&[("producer.override.sasl.kerberos.kinit.cmd", "sh -c id")]);
        assert_eq!(OverridePolicy::All.check(&c).len(), 1);
    }

    #[test]
    fn principal_allows_the_identity_keys_only() {
        let c = connector(&[
            ("producer.override.sasl.jaas.config", "x"),
            ("producer.override.acks", "0"),
        ]);
        let e = OverridePolicy::Principal.check(&c);
        assert_eq!(e.len(), 1);
        assert!(e[0].to_string().contains("producer.override.acks"));
    }

    #[test]
    fn connects_names_parse() {
        assert_eq!(OverridePolicy::parse("All"), Some(OverridePolicy::All));
        assert_eq!(
            OverridePolicy::parse(
                "org.apache.kafka.connect.connector.policy.PrincipalConnectorClientConfigOverridePolicy"
            ),
            Some(OverridePolicy::Principal)
        );
        assert_eq!(OverridePolicy::parse("some"), None);
    }
}
