//! What an upload's answer says of the rows it refused: the first [`MAX_LISTED_REJECTS`] in
//! full (row, value, why), and every one counted, by reason. A 16 MiB list of one bad value
//! repeated is a short answer, not a 100 MB one; the counts still say what went wrong.

use std::collections::BTreeMap;

/// Refused rows listed in full in one answer; the rest are counted by reason.
pub const MAX_LISTED_REJECTS: usize = 100;

/// The refused rows of one upload.
#[derive(Debug)]
pub struct Rejects<T> {
    /// The first refused rows, in order, at most [`MAX_LISTED_REJECTS`].
    pub listed: Vec<T>,
    /// Every refused row.
    pub count: usize,
    /// Every refused row, by the kind of its reason.
    pub by_reason: BTreeMap<&'static str, usize>,
}

impl<T> Default for Rejects<T> {
    fn default() -> Self {
        Rejects {
            listed: Vec::new(),
            count: 0,
            by_reason: BTreeMap::new(),
        }
    }
}

impl<T> Rejects<T> {
    /// Counts a refused row under `reason`; keeps it (made only then) while the list has room.
    pub fn push(&mut self, reason: &'static str, row: impl FnOnce() -> T) {
        self.count += 1;
        *self.by_reason.entry(reason).or_default() += 1;
        if self.listed.len() < MAX_LISTED_REJECTS {
            self.listed.push(row());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The counts as an answer shows them: `{"count": n, "byReason": {...}, "listed": k}`.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "byReason": self.by_reason,
            "listed": self.listed.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rows_are_listed_and_every_one_counted() {
        let mut rejects = Rejects::default();
        for row in 0..MAX_LISTED_REJECTS + 50 {
            rejects.push(if row % 2 == 0 { "even" } else { "odd" }, || row);
        }
        assert_eq!(rejects.listed.len(), MAX_LISTED_REJECTS);
        assert_eq!(
            rejects.listed[MAX_LISTED_REJECTS - 1],
            MAX_LISTED_REJECTS - 1
        );
        assert_eq!(rejects.count, MAX_LISTED_REJECTS + 50);
        assert_eq!(rejects.by_reason["even"], 75);
        assert_eq!(rejects.by_reason["odd"], 75);
    }
}
