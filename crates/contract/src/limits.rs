//! [`RateBudget`]: a rate limit a poster says its platform keeps (contract
//! 0.4.0's `limits` interface), checked before the host relies on it.

use serde::{Deserialize, Serialize};

/// The most budgets the host takes from one poster.
const MAX_BUDGETS: usize = 8;

/// At most `count` attempts in any `per_ms` milliseconds, for each account
/// or for every account of a platform instance together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateBudget {
    pub count: u32,
    pub per_ms: u64,
    /// Every account on the instance together, rather than each alone.
    pub platform: bool,
}

impl RateBudget {
    /// What a poster declared, checked: at most [`MAX_BUDGETS`], each a
    /// count from 1 to 1,000,000 over 1 s to 7 days. A poster that
    /// declares a budget out of range is refused rather than half-believed.
    pub fn checked(budgets: Vec<RateBudget>) -> Result<Vec<RateBudget>, String> {
        if budgets.len() > MAX_BUDGETS {
            return Err(format!(
                "it declares {} rate budgets, more than {MAX_BUDGETS}",
                budgets.len()
            ));
        }
        for b in &budgets {
            if !(1..=1_000_000).contains(&b.count)
                || !(1_000..=7 * 24 * 3_600_000).contains(&b.per_ms)
            {
                return Err(format!(
                    "it declares a rate budget of {} per {} ms; a count must be 1 to 1,000,000 and a window 1 s to 7 days",
                    b.count, b.per_ms
                ));
            }
        }
        Ok(budgets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_out_of_range_is_refused() {
        let ok = RateBudget {
            count: 300,
            per_ms: 300_000,
            platform: false,
        };
        assert_eq!(RateBudget::checked(vec![ok]), Ok(vec![ok]));
        for bad in [
            RateBudget { count: 0, ..ok },
            RateBudget { per_ms: 999, ..ok },
            RateBudget {
                per_ms: u64::MAX,
                ..ok
            },
        ] {
            assert!(RateBudget::checked(vec![bad]).is_err(), "{bad:?}");
        }
        assert!(RateBudget::checked(vec![ok; 9]).is_err());
    }
}
