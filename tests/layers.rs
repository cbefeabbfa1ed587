//! porter-metrics is a `metrics` recorder like any other: metrics-util's layers compose
//! with it. A fanout feeds ours and metrics-util's debugging recorder, under a prefix and a
//! filter; both see the same values, and our scrape stays valid.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::layers::{FanoutBuilder, FilterLayer, PrefixLayer, Stack};
use porter_metrics::testing::Exposition;
use porter_metrics::Builder;

#[test]
fn metrics_util_layers_compose_with_our_recorder() {
    let ours = Builder::new().build_local();
    let debugging = DebuggingRecorder::new();
    let snapshotter = debugging.snapshotter();
    let fanout = FanoutBuilder::default()
        .add_recorder(ours.clone())
        .add_recorder(debugging)
        .build();
    let stack = Stack::new(fanout)
        .push(FilterLayer::from_patterns(["internal"]))
        .push(PrefixLayer::new("checkout"));
    metrics::with_local_recorder(&stack, || {
        metrics::counter!("orders_total", "region" => "eu").increment(3);
        metrics::counter!("internal_retries_total").increment(9);
        metrics::gauge!("cart.items").set(4.0);
        metrics::histogram!("payment_seconds").record(0.2);
    });

    let scrape = Exposition::parse(&ours.render()).expect("a valid exposition");
    assert_eq!(
        scrape.value("checkout_orders_total", &["region", "eu"]),
        Some(3.0)
    );
    assert_eq!(scrape.value("checkout_cart_items", &[]), Some(4.0));
    assert_eq!(
        scrape
            .histogram("checkout_payment_seconds", &[])
            .map(|h| h.count),
        Some(1)
    );
    assert!(
        !scrape.samples().iter().any(|s| s.name.contains("internal")),
        "filtered out before our recorder"
    );

    // The debugging recorder saw exactly the same. The prefix joins with a dot, which a
    // legacy scrape writes as `_` (a UTF-8 one keeps it).
    let seen = snapshotter.snapshot().into_vec();
    let counter = seen
        .iter()
        .find(|(key, ..)| key.key().name() == "checkout.orders_total")
        .map(|(.., value)| value);
    assert!(matches!(counter, Some(DebugValue::Counter(3))), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
}
