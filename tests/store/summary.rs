//! The usage summary on both backends: grouping, filters, and exact sums.

use super::*;
use tollgate::store::{SummaryFilter, SummaryGroup, SummaryRow};

both!(check_usage_summary_groups_exactly);

/// A ledger row with its own model, tokens and subject.
fn usage(model: &str, user: Option<&str>, org: Option<&str>, cost: &str, tokens: (u64, u64), at_ms: i64) -> UsageRow {
    UsageRow {
        model: model.into(),
        input_tokens: tokens.0,
        output_tokens: tokens.1,
        ..row(
            Uuid::new_v4(),
            UsageSubject {
                user_id: user.map(Into::into),
                organization_id: org.map(Into::into),
                ..UsageSubject::default()
            },
            cost,
            at_ms,
        )
    }
}

fn summary_row(group: &str, events: u64, input: u64, output: u64, cost: &str) -> SummaryRow {
    SummaryRow {
        group: group.into(),
        events,
        input_tokens: input,
        output_tokens: output,
        cost_usd: d(cost),
    }
}

async fn check_usage_summary_groups_exactly(store: Store) {
    let day = DAY_MS;
    let mut rows = vec![
        usage("m-a", Some("u1"), Some("o"), "0.1", (10, 1), NOW),
        usage("m-b", Some("u2"), Some("o"), "0.2", (20, 2), NOW + 3_600_000),
        usage("m-a", Some("u1"), Some("o"), "0.000000000001", (30, 3), NOW + day),
        usage("m-b", None, Some("o"), "0.3", (40, 4), NOW + day),
        usage("m-a", Some("u3"), Some("p"), "5", (50, 5), NOW),
        usage("m-c", None, None, "0.7", (60, 6), NOW - day),
    ];
    rows[5].subject.guest_ip = Some("203.0.113.7".into());
    // Ten times 0.1 is exactly 1 (as floats it is 0.9999999999999999).
    rows.extend((0..10).map(|_| usage("m-d", Some("u4"), Some("q"), "0.1", (1, 1), NOW)));
    store.record_usage(&rows).await.unwrap();

    let filter = |org: Option<&str>, user: Option<&str>, from_ms: i64, to_ms: i64| SummaryFilter {
        org_id: org.map(Into::into),
        user_id: user.map(Into::into),
        from_ms,
        to_ms,
    };
    let all_time = (NOW - 10 * day, NOW + 10 * day);
    let org_o = filter(Some("o"), None, all_time.0, all_time.1);

    assert_eq!(
        store.usage_summary(&org_o, SummaryGroup::Model).await.unwrap(),
        vec![
            summary_row("m-a", 2, 40, 4, "0.100000000001"),
            summary_row("m-b", 2, 60, 6, "0.5"),
        ]
    );
    // Rows charged to no user are grouped under "": every grouping adds up
    // to the same totals.
    assert_eq!(
        store.usage_summary(&org_o, SummaryGroup::User).await.unwrap(),
        vec![
            summary_row("", 1, 40, 4, "0.3"),
            summary_row("u1", 2, 40, 4, "0.100000000001"),
            summary_row("u2", 1, 20, 2, "0.2"),
        ]
    );
    assert_eq!(
        store.usage_summary(&org_o, SummaryGroup::Day).await.unwrap(),
        vec![
            summary_row("2026-11-28", 2, 30, 3, "0.3"),
            summary_row("2026-11-29", 2, 70, 7, "0.300000000001"),
        ]
    );

    // By user, and by user within an organisation.
    let u1 = filter(None, Some("u1"), all_time.0, all_time.1);
    assert_eq!(
        store.usage_summary(&u1, SummaryGroup::Day).await.unwrap(),
        vec![
            summary_row("2026-11-28", 1, 10, 1, "0.1"),
            summary_row("2026-11-29", 1, 30, 3, "0.000000000001"),
        ]
    );
    let u1_in_p = filter(Some("p"), Some("u1"), all_time.0, all_time.1);
    assert!(
        store
            .usage_summary(&u1_in_p, SummaryGroup::Model)
            .await
            .unwrap()
            .is_empty()
    );

    // The range is [from, to): the rows at NOW + day fall outside.
    let range = filter(Some("o"), None, NOW + 3_600_000, NOW + day);
    assert_eq!(
        store.usage_summary(&range, SummaryGroup::Model).await.unwrap(),
        vec![summary_row("m-b", 1, 20, 2, "0.2")]
    );
    let empty = filter(None, None, NOW, NOW);
    assert!(
        store
            .usage_summary(&empty, SummaryGroup::Model)
            .await
            .unwrap()
            .is_empty()
    );
    let backwards = filter(None, None, NOW + day, NOW);
    assert!(
        store
            .usage_summary(&backwards, SummaryGroup::Model)
            .await
            .unwrap()
            .is_empty()
    );

    // Everything: guests included, exact sums.
    let everything = filter(None, None, all_time.0, all_time.1);
    let by_model = store.usage_summary(&everything, SummaryGroup::Model).await.unwrap();
    assert_eq!(
        by_model,
        vec![
            summary_row("m-a", 3, 90, 9, "5.100000000001"),
            summary_row("m-b", 2, 60, 6, "0.5"),
            summary_row("m-c", 1, 60, 6, "0.7"),
            summary_row("m-d", 10, 10, 10, "1"),
        ]
    );
    assert_eq!(by_model[3].cost_usd.to_string(), "1");
    let by_day = store.usage_summary(&everything, SummaryGroup::Day).await.unwrap();
    assert_eq!(
        by_day.iter().map(|r| r.group.as_str()).collect::<Vec<_>>(),
        vec!["2026-11-27", "2026-11-28", "2026-11-29"]
    );
    let total: Decimal = by_day.iter().map(|r| r.cost_usd).sum();
    assert_eq!(total, d("7.300000000001"));
}
