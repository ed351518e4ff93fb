//! Impossible dates are refused.

use super::*;

#[test]
fn a_campaign_starting_on_a_day_its_month_lacks_is_refused() {
    let server = Server::start(&[]);
    for date in [
        "2026-02-30T10:00:00+05:30",
        "2026-04-31T10:00:00+05:30",
        "2025-02-29T10:00:00Z",
    ] {
        let body = format!(r#"{{"contacts": ["+919876543211"], "startAt": "{date}"}}"#);
        let refused = server
            .post_json("/campaigns", &body)
            .assert_error(400, "bad_request");
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("does not have"),
            "{date}: {refused}"
        );
    }
    let leap = server.post_json(
        "/campaigns",
        r#"{"contacts": ["+919876543211"], "startAt": "2028-02-29T10:00:00+05:30"}"#,
    );
    assert_eq!(leap.status, 201, "{}", leap.json());
}
