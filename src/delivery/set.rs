//! The Security Event Token of an event (RFC 8417): its claims, signed by the caller with the
//! key that signs now (`typ: secevent+jwt`), so that a receiver verifies it with the JWKS.

use serde_json::{Map, Value, json};

use crate::events::EventKind;
use crate::store::ClaimedDelivery;

/// The JWT header's `typ` of a SET (RFC 8417 §2.3).
pub const SET_TYPE: &str = "secevent+jwt";

/// The claims of `delivery`'s SET for `audience`, issued at `issued_at` (Unix seconds). `jti`
/// is the event's id, the same on every retry; `toe` is when the change happened.
pub fn claims(
    delivery: &ClaimedDelivery,
    kind: EventKind,
    issuer: &str,
    audience: &str,
    issued_at: i64,
) -> Map<String, Value> {
    let occurred_at = delivery.occurred_at.div_euclid(1_000);
    let mut details = json!({
        "user_id": delivery.user_id.to_string(),
        "username": delivery.username,
        "occurred_at": occurred_at,
    });
    if let (Some(client_id), Some(details)) = (&delivery.client_id, details.as_object_mut()) {
        details.insert("client_id".to_owned(), Value::from(client_id.as_str()));
    }
    let mut events = Map::new();
    events.insert(kind.uri().to_owned(), details);
    let claims = json!({
        "iss": issuer,
        "iat": issued_at,
        "jti": delivery.event_id.to_string(),
        "aud": audience,
        "toe": occurred_at,
        // RFC 9493 subject identifier: the user as this issuer's `sub`.
        "sub_id": {"format": "iss_sub", "iss": issuer, "sub": delivery.user_id.to_string()},
        "events": events,
    });
    match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
