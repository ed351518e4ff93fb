//! The unit tests of `calls/campaigns/dialer.rs`.

use super::*;
use crate::calls::log::{CallLog, LogEvent};
use crate::calls::status::Status;
use crate::store::campaigns::{NewCampaign, NewContact};
use std::sync::Mutex;

/// A telephone network that places every call and says every call it is asked about has
/// completed; it keeps what it was sent and asked.
#[derive(Default)]
struct Network {
    sent: Mutex<Vec<String>>,
    asked: Mutex<Vec<String>>,
}

impl Telephony for Network {
    type Prepared = String;
    fn do_not_call(&self, _: &str) -> bool {
        false
    }
    fn prepare(&self, order: &Order) -> Result<String, NotNow> {
        Ok(order.to.clone())
    }
    fn send(&self, to: String, _answered: Box<dyn FnOnce(Dialed) + Send>) {
        self.sent.lock().unwrap().push(to);
    }
    fn withdraw(&self, _: String) {}
    fn ask(&self, _: Option<&str>, call_sid: &str) -> Result<Option<Outcome>, String> {
        self.asked.lock().unwrap().push(call_sid.to_owned());
        Ok(Some(Outcome::Completed))
    }
    fn draining(&self) -> bool {
        false
    }
}

/// Thursday 10:00 in Kolkata: inside the default window.
const THURSDAY_MORNING: &str = "2026-11-26T10:00:00+05:30";

/// A dialer over a new `calls.db` (the call log's tables and the store's), with one running
/// campaign of `contacts` numbers at `calls_per_minute`.
fn dialer_with_campaign(
    name: &str,
    contacts: usize,
    calls_per_minute: u32,
) -> (Dialer<Network>, Arc<Network>, CallLog, String) {
    let dir = std::env::temp_dir().join(format!("evb-dialer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("calls.db");
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let at = crate::store::Location::Sqlite(path);
    let (call_log, _) = CallLog::open(&at, metrics).unwrap();
    let (store, _) = Store::open(&at).unwrap();
    let settings = Settings {
        name: name.into(),
        from: None,
        agent: None,
        max_concurrent: 10,
        calls_per_minute,
        retry: super::super::Retry::default(),
        window: super::super::WindowSpec::default(),
        start_at: None,
        redial_unknown: false,
    };
    let now_ms = super::super::window::parse_time(THURSDAY_MORNING).unwrap();
    let id = format!("campaign-{name}");
    store
        .campaign_create(
            NewCampaign {
                id: id.clone(),
                name: name.into(),
                status: "running".into(),
                settings: serde_json::to_string(&settings).unwrap(),
                created_at: now_ms,
            },
            (0..contacts)
                .map(|k| NewContact {
                    to: format!("+9198765432{k:02}"),
                    params: "{}".into(),
                })
                .collect(),
        )
        .unwrap();
    let network = Arc::new(Network::default());
    let (events, queue) = mpsc::channel();
    let dialer = Dialer::new(
        store,
        Clock::starting_at(now_ms),
        network.clone(),
        Arc::new(CampaignMetrics::default()),
        events,
        queue,
    );
    (dialer, network, call_log, id)
}

/// Opens and places attempt 1 of contact `row`, as the dialer did before a restart.
fn placed(dialer: &Dialer<Network>, campaign: &str, row: i64, call_sid: &str) -> String {
    let call_log_id = CallLogId::generate().as_str().to_owned();
    let store = &dialer.store;
    store
        .attempt_begin(campaign.into(), row, 1, call_log_id.clone(), 0)
        .unwrap();
    store
        .attempt_placed(call_log_id.clone(), call_sid.into())
        .unwrap();
    call_log_id
}

#[test]
fn a_placed_attempt_whose_call_row_was_lost_is_asked_about_after_a_restart() {
    let _logs = crate::log::Captured::start();
    let (mut dialer, network, call_log, id) = dialer_with_campaign("restart", 2, 60);
    // CA1's row was lost with the call log's last batch (kill -9); CA2's row says how its
    // call ended.
    let lost = placed(&dialer, &id, 1, "CA1");
    let kept = placed(&dialer, &id, 2, "CA2");
    let kept_id = CallLogId::parse(&kept).unwrap();
    call_log.record(LogEvent::Requested {
        id: kept_id.clone(),
        to: "+919876543201".into(),
        caller_id: "08047112233".into(),
    });
    call_log.record(LogEvent::Placed {
        id: kept_id,
        call_sid: "CA2".into(),
    });
    call_log.record(LogEvent::ExotelStatus {
        custom_field: Some(kept.clone()),
        call_sid: Some("CA2".into()),
        status: Some(Status::Completed),
        duration_s: Some(30),
        recording_url: None,
    });
    call_log.sync();

    // The dialer's start, then its first look at ended calls.
    dialer.reload();
    dialer.recover();
    dialer.collect_ended();
    dialer.ask_exotel();

    assert_eq!(
        *network.asked.lock().unwrap(),
        ["CA1"],
        "the call with no row is asked about; the one whose row ended is not"
    );
    assert!(
        dialer.store.attempts_open().unwrap().is_empty(),
        "both attempts closed"
    );
    assert!(dialer.asking.is_empty(), "{:?}", dialer.asking.keys());
    assert_eq!(dialer.campaigns[&id].in_flight, 0);
    assert_eq!(
        dialer.metrics.outcomes[0].load(Ordering::Relaxed),
        2,
        "both completed ({lost}, {kept})"
    );
}

#[test]
fn a_late_turn_dials_one_call_and_the_next_waits_a_whole_interval() {
    let _logs = crate::log::Captured::start();
    // 6,000 a minute: a call every 10 ms, less than the dialer's tick.
    let (mut dialer, network, _call_log, id) = dialer_with_campaign("late", 5, 6_000);
    dialer.reload();
    let interval = dialer.campaigns[&id].interval;
    assert_eq!(interval, Duration::from_millis(10));
    // The turn comes three intervals late.
    let live = dialer.campaigns.get_mut(&id).unwrap();
    live.next_dial = Instant::now() - 3 * interval;

    let decided = Instant::now();
    let now_ms = dialer.clock.now_ms();
    dialer.dial_campaign(&id, now_ms);

    assert_eq!(
        network.sent.lock().unwrap().len(),
        1,
        "a late turn dials one call, not the ones it missed"
    );
    let next = dialer.campaigns[&id].next_dial;
    assert!(
        next >= decided + interval,
        "the next call is due a whole interval after this one"
    );
    // The next turn waits for that call, not for the 20 ms tick. (It may be due already on
    // a busy machine, where the store's commit took longer than the interval: zero then.)
    let wait = dialer.wait();
    assert!(
        wait <= interval,
        "waits {wait:?} for a call due in at most {interval:?}"
    );
}

#[test]
fn a_completed_campaign_writes_one_event_with_its_completion_when_events_are_on() {
    crate::store::testing::on_each_backend("outbox", one_completion_event_on);
}

fn one_completion_event_on(at: &crate::store::Location) {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (_call_log, _) = CallLog::open_with_outbox(at, metrics, true).unwrap();
    let (store, _) = Store::open(at).unwrap();
    let store = store.with_outbox(true);
    store
        .campaign_create(
            NewCampaign {
                id: "c-outbox".into(),
                name: "dues".into(),
                status: "running".into(),
                settings: "{}".into(),
                created_at: 1,
            },
            vec![NewContact {
                to: "+919876543200".into(),
                params: "{}".into(),
            }],
        )
        .unwrap();
    // Completed once: one event; asked again (already completed): none more.
    for _ in 0..2 {
        store
            .campaign_set_status("c-outbox".into(), &["running"], "completed", None, 5)
            .unwrap();
    }
    let conn = at.connect(crate::store::schema::Owner::Events).unwrap();
    let events = crate::store::outbox::list(conn.as_ref(), "pending", 10).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "campaign.completed");
    let body: serde_json::Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["data"]["id"], "c-outbox");
    assert_eq!(body["data"]["total"], 1);
}
