use super::*;

fn props<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
    move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn check(expression: &str, pairs: &[(&str, &str)]) -> bool {
    SqlFilter::compile(expression)
        .unwrap_or_else(|err| panic!("{expression}: {err}"))
        .matches(props(pairs))
}

#[test]
fn comparisons_on_numbers_and_strings() {
    let message = [("a", "5"), ("b", "abc"), ("price", "9.5"), ("TAGS", "TagA")];
    assert!(check("a > 3", &message));
    assert!(check("a >= 5 AND a <= 5", &message));
    assert!(!check("a < 5", &message));
    assert!(check("a = 5", &message));
    assert!(check("a <> 6", &message));
    assert!(check("price > 9.4 and price < 9.6", &message));
    assert!(check("b = 'abc'", &message));
    assert!(check("b <> 'abd'", &message));
    assert!(check("TAGS = 'TagA'", &message));
    assert!(check("a > -1", &message));
    assert!(check("-a < 0 OR a > 0", &message));
    // Two properties are ordered as decimals.
    assert!(check("price > a", &message));
}

#[test]
fn unconvertible_values_fail_the_whole_evaluation() {
    let message = [("b", "abc"), ("a", "5")];
    assert!(!check("b > 3", &message));
    assert!(!check("b > 3 OR a = 5", &message));
    assert!(!check("b = 3", &message));
}

#[test]
fn null_handling_is_three_valued() {
    let message = [("a", "1")];
    assert!(check("missing IS NULL", &message));
    assert!(!check("missing IS NOT NULL", &message));
    assert!(check("a IS NOT NULL", &message));
    assert!(!check("missing = 1", &message));
    assert!(!check("NOT (missing = 1)", &message));
    assert!(check("missing = 1 OR a = 1", &message));
    assert!(!check("missing = 1 AND a = 1", &message));
    assert!(!check("missing > 1 OR missing <= 1", &message));
}

#[test]
fn between_in_and_text_tests() {
    let message = [("n", "7"), ("region", "eu-west"), ("c", "blue")];
    assert!(check("n BETWEEN 1 AND 10", &message));
    assert!(!check("n NOT BETWEEN 1 AND 10", &message));
    assert!(check("n NOT BETWEEN 8 AND 10", &message));
    assert!(check("c IN ('red', 'blue')", &message));
    assert!(!check("c NOT IN ('red', 'blue')", &message));
    assert!(!check("missing IN ('x')", &message));
    assert!(check("region CONTAINS 'west'", &message));
    assert!(check("region STARTSWITH 'eu'", &message));
    assert!(check("region ENDSWITH 'west'", &message));
    assert!(check("region NOT ENDSWITH 'east'", &message));
    assert!(!check("region NOT CONTAINS 'u-w'", &message));
}

#[test]
fn booleans_keywords_and_precedence() {
    let message = [("flag", "TRUE"), ("a", "1"), ("b", "2")];
    assert!(check("TRUE", &message));
    assert!(!check("FALSE", &message));
    assert!(check("flag", &message));
    assert!(check("flag = TRUE", &message));
    assert!(check("not (a = 2) and b = 2", &message));
    // NOT binds tighter than `=`, as in RocketMQ: this is `(NOT a) = 2`.
    assert!(!check("NOT a = 2 AND b = 2", &message));
    assert!(check("a = 1 OR a = 3 AND b = 3", &message));
    assert!(!check("(a = 1 OR a = 3) AND b = 3", &message));
    assert!(check(
        "a = 1 -- a comment\n AND /* another */ b = 2",
        &message
    ));
    assert!(check("s = 'it''s'", &[("s", "it's")]));
    assert!(check("big = 12L", &[("big", "12")]));
    assert!(check("e = 1.5E1", &[("e", "15")]));
}

#[test]
fn bad_expressions_are_refused() {
    for bad in [
        "",
        "a >",
        "a > 'x'",
        "a = NULL",
        "'x' IN ('x')",
        "a IN ()",
        "a IN (1)",
        "n BETWEEN 10 AND 1",
        "a > TRUE",
        "a = 1 AND 5",
        "5",
        "a = 'open",
        "a # 1",
        "(a = 1",
        "a = 1)",
        "a LIKE 'x%'",
        "a = 09",
        "TRUE = 1",
    ] {
        assert!(SqlFilter::compile(bad).is_err(), "{bad:?} compiled");
    }
    let deep = format!("{}a = 1{}", "(".repeat(200), ")".repeat(200));
    assert!(SqlFilter::compile(&deep).is_err());
    let nots = format!("{}a = 1", "NOT ".repeat(200));
    assert!(SqlFilter::compile(&nots).is_err());
}

/// A long flat chain (no nesting) builds a tree as deep as the chain; evaluating or dropping
/// one deeper than the stack allows aborted the broker (found by the `sql_filter` target).
#[test]
fn long_operator_chains_are_refused_not_recursed() {
    let chain = vec!["a = 1"; 200_000].join(" OR ");
    let compiled = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || SqlFilter::compile(&chain).map(|filter| filter.matches(|_| Some("2"))))
        .expect("spawn")
        .join()
        .expect("no stack overflow");
    assert!(compiled.is_err(), "a 200,000-term chain compiled");
    // A realistic long filter still compiles.
    let tags = (0..100)
        .map(|i| format!("TAGS = 't{i}'"))
        .collect::<Vec<_>>();
    assert!(SqlFilter::compile(&tags.join(" OR ")).is_ok());
    // The deepest tree the operand limit allows evaluates and drops on a 2 MiB stack.
    let deepest = format!("a <> {}", vec!["1"; MAX_OPERANDS - 1].join(" <> "));
    let matched = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || SqlFilter::compile(&deepest).map(|filter| filter.matches(|_| Some("1"))))
        .expect("spawn")
        .join()
        .expect("no stack overflow");
    assert!(matched.is_ok());
}
