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
    /// On PostgreSQL, each plan is also written where every instance finds it.
    shared: Option<super::shared::Shared>,
}

impl Plans {
    /// Plans that are also written to the shared state when there is one.
    pub fn shared(shared: Option<super::shared::Shared>) -> Plans {
        Plans {
            shared,
            ..Plans::default()
        }
    }

    /// Keeps the call's plan (and, on PostgreSQL, writes it for every instance, waiting: the
    /// media may start anywhere once Exotel has the URL).
    pub fn put(&self, id: &CallLogId, plan: Plan) {
        if let Some(shared) = &self.shared {
            let stored = super::shared::grants::StoredPlan {
                params: plan.params.clone(),
                campaign: plan.campaign.clone(),
                customer: plan.customer.clone(),
                agent: plan.agent.as_ref().map(|a| a.name.clone()),
            };
            if let Err(e) = shared.publish_plan(id.as_str(), &stored, PLAN_TTL) {
                crate::warn!("plan.not_shared", callLogId = id, error = e);
            }
        }
        self.put_here(id, plan);
    }

    /// Keeps the call's plan in this instance only.
    pub fn put_here(&self, id: &CallLogId, plan: Plan) {
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
