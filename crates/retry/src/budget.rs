use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::ConfigError;

const SLOTS: usize = 10;
/// One withdrawal costs this many units; a deposit earns `ratio_percent` units, so a ratio of
/// 20 % lets one retry through per five requests.
const RETRY_COST: i64 = 100;

/// A token bucket of retries shared by every caller of a downstream, so that retries cannot
/// multiply the load on a service that is already failing (Finagle's and tower's retry budget).
///
/// Each request [`deposit`](Self::deposit)s; each retry must [`withdraw`](Self::withdraw). Retries
/// are allowed up to `ratio_percent` of the requests seen in the last `window`, plus a floor of
/// `min_per_sec` retries per second so that low-traffic callers can still retry.
///
/// Lock-free: deposits and withdrawals are a compare-and-swap on one of ten time slots, and the
/// balance is the sum of the live slots. Time is tokio's, so a paused clock drives it in tests.
///
/// ```
/// use std::time::Duration;
/// use steadfast_retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let budget = RetryBudget::builder()
///     .window(Duration::from_secs(10))
///     .min_per_sec(0)
///     .ratio_percent(50)
///     .build()
///     .unwrap();
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.withdraw()); // 2 requests at 50% earn one retry
/// assert!(!budget.withdraw());
/// # }
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    start: Instant,
    slot_len: Duration,
    reserve: i64,
    deposit_amount: i64,
    /// Each slot packs (generation: high 32 bits, balance: low 32 bits as i32).
    slots: [AtomicU64; SLOTS],
}

impl RetryBudget {
    /// A builder with the defaults: 10 s window, 10 retries per second minimum, 20 % ratio.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            window: Duration::from_secs(10),
            min_per_sec: 10,
            ratio_percent: 20,
        }
    }

    /// Records one request (not a retry), earning `ratio_percent` of a retry.
    pub fn deposit(&self) {
        self.add(self.deposit_amount);
    }

    /// Tries to spend one retry; `false` means the budget is exhausted and the caller should
    /// fail instead of retrying.
    pub fn withdraw(&self) -> bool {
        let generation = self.generation();
        // Optimistic: check the balance, then spend. Two racing withdrawals may both pass the
        // check; the overdraft is at most one retry per racing caller and is repaid by deposits.
        if self.balance_at(generation) < RETRY_COST {
            return false;
        }
        self.add_at(generation, -RETRY_COST);
        true
    }

    /// Retries currently affordable (rounded down).
    pub fn remaining(&self) -> u64 {
        (self.balance_at(self.generation()).max(0) / RETRY_COST) as u64
    }

    fn generation(&self) -> u32 {
        let elapsed = self.start.elapsed().as_nanos();
        (elapsed / self.slot_len.as_nanos().max(1)) as u32
    }

    fn add(&self, amount: i64) {
        self.add_at(self.generation(), amount);
    }

    fn add_at(&self, generation: u32, amount: i64) {
        let slot = &self.slots[generation as usize % SLOTS];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (slot_gen, value) = unpack(current);
            let base = if slot_gen == generation { value } else { 0 };
            let next = pack(
                generation,
                (base as i64 + amount).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            );
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    fn balance_at(&self, generation: u32) -> i64 {
        let oldest = generation.saturating_sub(SLOTS as u32 - 1);
        let live: i64 = self
            .slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            .filter(|(g, _)| (oldest..=generation).contains(g))
            .map(|(_, v)| v as i64)
            .sum();
        self.reserve + live
    }
}

fn pack(generation: u32, value: i32) -> u64 {
    ((generation as u64) << 32) | (value as u32 as u64)
}

fn unpack(word: u64) -> (u32, i32) {
    ((word >> 32) as u32, word as u32 as i32)
}

/// Builds a validated [`RetryBudget`]; see [`RetryBudget::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryBudgetBuilder {
    window: Duration,
    min_per_sec: u32,
    ratio_percent: u32,
}

impl RetryBudgetBuilder {
    /// How long a deposit counts (default: 10 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Retries per second always allowed, whatever the traffic (default: 10).
    pub fn min_per_sec(mut self, n: u32) -> Self {
        self.min_per_sec = n;
        self
    }

    /// Retries allowed as a percentage of requests (default: 20; 0..=1000).
    pub fn ratio_percent(mut self, percent: u32) -> Self {
        self.ratio_percent = percent;
        self
    }

    /// Validates and returns the budget.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        if self.window.is_zero() {
            return Err(ConfigError::ZeroWindow);
        }
        if self.ratio_percent > 1000 {
            return Err(ConfigError::InvalidRatio(self.ratio_percent));
        }
        let reserve =
            (self.min_per_sec as f64 * self.window.as_secs_f64() * RETRY_COST as f64) as i64;
        Ok(RetryBudget {
            start: Instant::now(),
            slot_len: self.window / SLOTS as u32,
            reserve,
            deposit_amount: self.ratio_percent as i64,
            slots: Default::default(),
        })
    }
}
