//! The route-file parsers are total: any JSON value as `route_infos.json`, and any text as a
//! route's `milestone_info`, give routes or an error naming the field — never a panic.

use proptest::prelude::*;
use serde_json::{Value, json};
use sftvsrl_envs::nav::milestone::parse_milestones;
use sftvsrl_envs::nav::route::parse_routes;

/// Arbitrary JSON values, weighted toward the shapes of a route file.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just(1e308),
            Just(-1e308),
            Just(90.0),
            Just(-180.0),
            Just(0.0)
        ]
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        "\\{\n\"to_next_intersection_heading\": \"-?[0-9]{1,25} \\(north\\)\",\n\\}"
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        let keys = prop_oneof![
            Just("start_place".to_string()),
            Just("dest_place".to_string()),
            Just("name".to_string()),
            Just("relocated_geocode".to_string()),
            Just("route_results".to_string()),
            Just("geocode_list".to_string()),
            Just("init_heading".to_string()),
            Just("milestone_info".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_route_file_gives_routes_or_a_field_error(routes in json_value(), dest in json_value()) {
        let _ = parse_routes(&json!([[routes], dest]));
        let _ = parse_routes(&routes);
    }

    #[test]
    fn any_milestone_text_parses_or_fails(text in "(\\PC|\n|\\{|\\}|:|\"|\\(|\\)|-|[0-9]){0,80}") {
        let _ = parse_milestones(&text);
    }

    #[test]
    fn any_bytes_as_a_route_file(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let dir = std::env::temp_dir().join(format!("sftvsrl-route-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("route_infos.json");
        std::fs::write(&path, &bytes).unwrap();
        let _ = sftvsrl_envs::nav::route::load_routes(&path);
    }
}
