//! The PostgreSQL clusters the multi-instance tests will run on (`support::postgres`): one
//! starts on loopback as the tests' own, keeps what was committed across an immediate stop
//! and a start, and delivers a notification to a listening session, which is what the
//! instances' wake-ups will rest on.

#[path = "support/mod.rs"]
mod support;

use support::postgres::Cluster;

#[test]
fn a_tests_own_cluster_keeps_committed_rows_across_a_restart_and_notifies_a_listener() {
    let Some(pg) = Cluster::start("harness") else {
        return;
    };
    assert!(pg.url.starts_with("postgres://app@127.0.0.1:"));
    pg.psql("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (7);");
    pg.restart();
    assert_eq!(pg.psql("SELECT n FROM kept").trim(), "7");
    let heard = pg.psql("LISTEN wake; NOTIFY wake, 'call-1';");
    assert!(heard.contains(r#"payload "call-1""#), "{heard}");
}
