//! Which roles this process runs.

use anyhow::bail;

pub const ROLE_NAMES: [&str; 6] = [
    "identity",
    "users",
    "transactions",
    "rewards",
    "erasure",
    "ui",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles(Vec<&'static str>);

impl Roles {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        if raw.trim() == "all" {
            return Ok(Self(ROLE_NAMES.to_vec()));
        }
        let mut roles = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some(name) = ROLE_NAMES.iter().find(|n| **n == part) else {
                bail!(
                    "unknown role '{part}' in roles; use all or a list of: {}",
                    ROLE_NAMES.join(", ")
                );
            };
            if !roles.contains(name) {
                roles.push(*name);
            }
        }
        if roles.is_empty() {
            bail!("roles must be all or a list of: {}", ROLE_NAMES.join(", "));
        }
        Ok(Self(roles))
    }

    pub fn has(&self, role: &str) -> bool {
        self.0.contains(&role)
    }

    pub fn is_split(&self) -> bool {
        self.0.len() != ROLE_NAMES.len()
    }

    pub fn names(&self) -> &[&'static str] {
        &self.0
    }
}
