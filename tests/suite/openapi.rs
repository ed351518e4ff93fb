//! `GET /openapi.json`: served to anyone, OpenAPI 3.1, and its examples are what the server
//! takes. (That the router and the document list the same operations is a unit test beside the
//! router, `routes::tests`; schemathesis runs the whole document in CI, `dev/contract`.)

use crate::support;

use exotel_voicebot::sim::fake_exotel::{Behaviour, FakeExotel};
use serde_json::Value;
use support::{request, Server};

const TOKEN: &str = "op-token-123";

fn server() -> (Server, FakeExotel) {
    let fake = FakeExotel::start(Behaviour::Accept {
        sid: "CA-openapi".into(),
    });
    let base = fake.base_url();
    let server = Server::start(&[
        ("API_TOKEN", TOKEN),
        ("OPENAI_API_KEY", "sk-openapi-test-key"),
        ("EXOTEL_API_KEY", "k"),
        ("EXOTEL_API_TOKEN", "t"),
        ("EXOTEL_SID", "acme"),
        ("EXOTEL_CALLER_ID", "08047112233"),
        ("EXOTEL_API_BASE_URL", &base),
    ]);
    (server, fake)
}

#[test]
fn the_document_is_served_to_anyone_as_openapi_3_1_json() {
    let (server, _fake) = server();
    // No token: the document holds no secret.
    let answer = request(server.addr, "GET", "/openapi.json", &[], b"");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let doc = answer.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for scheme in ["bearer", "webhookSecret"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    // Every `$ref` names something the document has.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/").skip(1) {
        let target = &piece[..piece.find('"').unwrap()];
        let found = target.split('/').try_fold(&doc, |at, key| at.get(key));
        assert!(found.is_some(), "$ref to {target} names nothing");
    }
}

#[test]
fn every_documented_request_example_is_taken_as_documented() {
    let (server, _fake) = server();
    let doc: Value = request(server.addr, "GET", "/openapi.json", &[], b"").json();
    let mut sent = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let Some(content) = operation["requestBody"]["content"].as_object() else {
                continue;
            };
            for (content_type, body) in content {
                let Some(example) = body.get("example") else {
                    continue;
                };
                assert!(
                    !path.contains('{'),
                    "{method} {path}: an example needs its path"
                );
                let answer = request(
                    server.addr,
                    &method.to_ascii_uppercase(),
                    path,
                    &[
                        ("Authorization", &format!("Bearer {TOKEN}")),
                        ("Content-Type", content_type),
                    ],
                    example.to_string().as_bytes(),
                );
                // An example creates when the operation can (POST /campaigns also answers a
                // dryRun's 200).
                let documented = operation["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|status| status.starts_with('2'))
                    .max()
                    .unwrap();
                assert_eq!(
                    answer.status.to_string(),
                    *documented,
                    "{method} {path} with {example}: {}",
                    String::from_utf8_lossy(&answer.body)
                );
                if documented == "201" {
                    let location = answer.header("location").expect("201 names the resource");
                    let created = request(
                        server.addr,
                        "GET",
                        location,
                        &[("Authorization", &format!("Bearer {TOKEN}"))],
                        b"",
                    );
                    assert_eq!(created.status, 200, "GET {location}");
                }
                sent += 1;
            }
        }
    }
    assert!(sent >= 2, "{sent} examples");
}
