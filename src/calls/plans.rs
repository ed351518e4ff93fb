//! What a call carries from where it was asked for to its media session: its agent, the
//! parameters its bot gets beside the media URL's (a campaign contact's columns), and its
//! campaign.
//!
//! In memory: a plan lives from the dial to the media's start, and a restart ends every media
//! stream anyway. Plans whose media never came are dropped after [`PLAN_TTL`].

use super::CallLogId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A plan not taken by a media session within this is dropped.
pub const PLAN_TTL: Duration = Duration::from_secs(3 * 3600);

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Handed to the bot as custom parameters.
    pub params: Vec<(String, String)>,
    pub campaign: Option<String>,
    /// The number called (E.164), for the do-not-call key.
    pub customer: Option<String>,
    /// The agent that answers the call (a snapshot taken when it was dialed); `None`: `BOT`.
    pub agent: Option<std::sync::Arc<super::agents::Agent>>,
}

#[derive(Default)]
pub struct Plans {
    by_call: Mutex<HashMap<CallLogId, (Plan, Instant)>>,
}

impl Plans {
    pub fn put(&self, id: &CallLogId, plan: Plan) {
        let now = Instant::now();
        let mut plans = self.by_call.lock().unwrap_or_else(|p| p.into_inner());
        plans.retain(|_, (_, at)| now.duration_since(*at) < PLAN_TTL);
        plans.insert(id.clone(), (plan, now));
    }

    /// The call's plan, taken out.
    pub fn take(&self, id: &CallLogId) -> Option<Plan> {
        self.by_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .map(|(plan, _)| plan)
    }

    /// The agent of the call's plan, left in place (where its media runs depends on it).
    pub fn agent(&self, id: &CallLogId) -> Option<std::sync::Arc<super::agents::Agent>> {
        self.by_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .and_then(|(plan, _)| plan.agent.clone())
    }
}
