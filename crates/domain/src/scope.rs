//! OAuth scopes and the sets of them a token carries.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    OpenId,
    Bank,
    Admin,
    Rewards,
    /// A service may read a person's standing (registered, consent, restriction, erasure).
    Standing,
    /// The erasure service may tell the other roles to forget a person.
    Forget,
}

impl Scope {
    /// Every scope there is.
    pub const ALL: [Scope; 6] = [
        Scope::OpenId,
        Scope::Bank,
        Scope::Admin,
        Scope::Rewards,
        Scope::Standing,
        Scope::Forget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OpenId => "openid",
            Scope::Bank => "bank",
            Scope::Admin => "admin",
            Scope::Rewards => "rewards",
            Scope::Standing => "standing",
            Scope::Forget => "forget",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// A set of scopes, written space-separated as in OAuth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut out = Vec::new();
        for s in scopes {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Self(out)
    }

    /// Parses a space-separated list; unknown scopes are an error.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut out = Vec::new();
        for part in raw.split(' ').filter(|p| !p.is_empty()) {
            out.push(Scope::parse(part)?);
        }
        Some(Self::new(out))
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn intersect(&self, allowed: &Scopes) -> Scopes {
        Scopes::new(self.0.iter().copied().filter(|s| allowed.contains(*s)))
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(" "))
    }
}
