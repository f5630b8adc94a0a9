//! The names kybern gives its objects in a cluster: its own, or Kyverno's (`--names kyverno`) so
//! that tests and tools written for Kyverno find what they expect.

/// Which naming scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    #[default]
    Kybern,
    Kyverno,
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kybern" => Ok(Scheme::Kybern),
            "kyverno" => Ok(Scheme::Kyverno),
            other => Err(format!(
                "unknown naming scheme {other:?} (kybern or kyverno)"
            )),
        }
    }
}

/// Object names and labels under a scheme, for one namespace and Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub scheme: Scheme,
    /// Where Secrets, Leases and the ConfigMap live.
    pub namespace: String,
    pub service: String,
}

impl Names {
    pub fn new(scheme: Scheme, namespace: &str, service: Option<&str>) -> Self {
        let service = service.map_or_else(|| format!("{}-svc", scheme.product()), str::to_string);
        Names {
            scheme,
            namespace: namespace.to_string(),
            service,
        }
    }

    /// `kybern` or `kyverno`.
    pub fn product(&self) -> &'static str {
        self.scheme.product()
    }

    pub fn validating_webhook_configuration(&self) -> String {
        format!("{}-resource-validating-webhook-cfg", self.product())
    }

    /// The configuration that sends policies themselves to kybern, which refuses broken ones.
    pub fn policy_validating_webhook_configuration(&self) -> String {
        format!("{}-policy-validating-webhook-cfg", self.product())
    }

    pub fn mutating_webhook_configuration(&self) -> String {
        format!("{}-resource-mutating-webhook-cfg", self.product())
    }

    /// The label every webhook configuration kybern writes carries: (key, value).
    pub fn webhook_label(&self) -> (String, String) {
        (
            format!("webhook.{}.io/managed-by", self.product()),
            self.product().to_string(),
        )
    }

    /// The label of the certificate Secrets: (key, value).
    pub fn cert_label(&self) -> (String, String) {
        (
            format!("cert.{}.io/managed-by", self.product()),
            self.product().to_string(),
        )
    }

    /// The CA Secret, named after the Service's DNS name as Kyverno names it.
    pub fn ca_secret(&self) -> String {
        format!(
            "{}.{}.svc.{}-tls-ca",
            self.service,
            self.namespace,
            self.product()
        )
    }

    /// The serving certificate Secret.
    pub fn pair_secret(&self) -> String {
        format!(
            "{}.{}.svc.{}-tls-pair",
            self.service,
            self.namespace,
            self.product()
        )
    }

    /// The admission leader's Lease.
    pub fn leader_lease(&self) -> String {
        match self.scheme {
            Scheme::Kybern => "kybern-admission".into(),
            Scheme::Kyverno => "kyverno".into(),
        }
    }

    /// The background controller's Lease.
    pub fn background_lease(&self) -> String {
        match self.scheme {
            Scheme::Kybern => "kybern-background".into(),
            Scheme::Kyverno => "kyverno-background-controller".into(),
        }
    }

    /// The cleanup part's Lease.
    pub fn cleanup_lease(&self) -> String {
        match self.scheme {
            Scheme::Kybern => "kybern-cleanup".into(),
            Scheme::Kyverno => "kyverno-cleanup-controller".into(),
        }
    }

    /// The reports controller's Lease.
    pub fn reports_lease(&self) -> String {
        match self.scheme {
            Scheme::Kybern => "kybern-reports".into(),
            Scheme::Kyverno => "kyverno-reports-controller".into(),
        }
    }

    /// The Kyverno-format ConfigMap read for resource filters and exclusions.
    pub fn config_map(&self) -> String {
        self.product().to_string()
    }

    /// The DNS names the serving certificate must carry.
    pub fn dns_names(&self) -> Vec<String> {
        let (s, ns) = (&self.service, &self.namespace);
        vec![
            s.clone(),
            format!("{s}.{ns}"),
            format!("{s}.{ns}.svc"),
            format!("{s}.{ns}.svc.cluster.local"),
        ]
    }

    /// The field manager of server-side applies and the source of Events.
    pub fn field_manager(&self) -> &'static str {
        self.product()
    }
}

impl Scheme {
    fn product(self) -> &'static str {
        match self {
            Scheme::Kybern => "kybern",
            Scheme::Kyverno => "kyverno",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kyverno_scheme_uses_kyvernos_names() {
        let n = Names::new(Scheme::Kyverno, "kyverno", None);
        assert_eq!(n.service, "kyverno-svc");
        assert_eq!(n.ca_secret(), "kyverno-svc.kyverno.svc.kyverno-tls-ca");
        assert_eq!(
            n.validating_webhook_configuration(),
            "kyverno-resource-validating-webhook-cfg"
        );
        assert_eq!(n.leader_lease(), "kyverno");
        let k = Names::new(Scheme::Kybern, "kybern", None);
        assert_eq!(k.pair_secret(), "kybern-svc.kybern.svc.kybern-tls-pair");
        assert_eq!(
            k.webhook_label(),
            ("webhook.kybern.io/managed-by".into(), "kybern".into())
        );
        assert!(k.dns_names().contains(&"kybern-svc.kybern.svc".to_string()));
    }
}
