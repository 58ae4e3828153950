//! The fixed list of spending categories (documented in docs/api.md).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Groceries,
    Fuel,
    Dining,
    Coffee,
    Transport,
    Shopping,
    Travel,
    Entertainment,
    Utilities,
    Health,
    Other,
}

impl Category {
    pub const ALL: [Category; 11] = [
        Category::Groceries,
        Category::Fuel,
        Category::Dining,
        Category::Coffee,
        Category::Transport,
        Category::Shopping,
        Category::Travel,
        Category::Entertainment,
        Category::Utilities,
        Category::Health,
        Category::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Groceries => "groceries",
            Category::Fuel => "fuel",
            Category::Dining => "dining",
            Category::Coffee => "coffee",
            Category::Transport => "transport",
            Category::Shopping => "shopping",
            Category::Travel => "travel",
            Category::Entertainment => "entertainment",
            Category::Utilities => "utilities",
            Category::Health => "health",
            Category::Other => "other",
        }
    }

    /// Accepts the canonical lower-case name in any letter case.
    pub fn parse(input: &str) -> Result<Self, crate::Invalid> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(input))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
                crate::Invalid::new("category", format!("must be one of: {}", names.join(", ")))
            })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name_and_refuses_others() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Ok(c));
            assert_eq!(Category::parse(&c.as_str().to_uppercase()), Ok(c));
        }
        for bad in ["", "food ", "groceries\0", "casino"] {
            assert!(Category::parse(bad).is_err());
        }
    }
}
