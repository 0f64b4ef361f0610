//! The evaluator against `fixtures/evaluation.json`: answers computed by
//! `scripts/evaluation-fixture` from Python's `mmh3` and `hashlib`, independently of this crate.
//! Any implementation of Tower's evaluation (another language's SDK included) can read the same
//! file.

use flagtower_core::eval::{self, Bucketing, EvalError, Index};
use flagtower_core::{AppId, FlagId, Revision, ruleset};
use serde_json::Value;

fn fixture() -> Value {
    let text = include_str!("fixtures/evaluation.json");
    serde_json::from_str(text).expect("the fixture is JSON")
}

#[test]
fn every_case_of_the_fixture() {
    let f = fixture();
    let flags =
        ruleset::decode_flags(f["flags"].to_string().as_bytes()).expect("the fixture's flags");
    let index = Index::new(AppId::new(1), Revision::new(1), &flags);
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() > 500, "{} cases", cases.len());
    for case in cases {
        let bucketing = Bucketing::parse(case["bucketing"].as_str().unwrap()).unwrap();
        let user = case["user"].as_str();
        let got =
            index.evaluate(case["flag"].as_str().unwrap(), user, bucketing).expect("the flag");
        match case.get("error") {
            Some(code) => {
                assert_eq!(code, "TARGETING_KEY_MISSING", "{case}");
                assert_eq!(got, Err(EvalError::TargetingKeyMissing), "{case}");
            }
            None => {
                let got = got.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(got.enabled, case["enabled"].as_bool().unwrap(), "{case}");
                assert_eq!(got.reason.as_str(), case["reason"].as_str().unwrap(), "{case}");
            }
        }
    }
}

#[test]
fn buckets_of_the_fixture() {
    let f = fixture();
    for b in f["tower_buckets"].as_array().unwrap() {
        let flag = FlagId::new(b["flag_id"].as_i64().unwrap());
        assert_eq!(
            u64::from(eval::bucket(flag, b["user"].as_str().unwrap())),
            b["bucket"].as_u64().unwrap(),
            "{b}"
        );
    }
    for b in f["tailslide_buckets"].as_array().unwrap() {
        assert_eq!(
            u64::from(eval::tailslide_bucket(b["user"].as_str().unwrap())),
            b["bucket"].as_u64().unwrap(),
            "{b}"
        );
    }
}
