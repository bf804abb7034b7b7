use super::table::{Acc, Group};
use super::*;

fn templates() -> Arc<Templates> {
    Arc::new(Templates::upstream().unwrap())
}

#[test]
fn statistics_of_known_errors() {
    let mut a = Acc::default();
    for (e, covered) in [
        (-6.0, Some(false)),
        (-2.0, Some(true)),
        (1.0, Some(true)),
        (3.0, None),
    ] {
        a.add(e, covered);
    }
    assert_eq!(a.n(), 4);
    assert!((a.mae() - 3.0).abs() < 1e-12);
    assert!((a.bias() - -1.0).abs() < 1e-12);
    assert!((a.rmse() - (50.0f64 / 4.0).sqrt()).abs() < 1e-12);
    assert_eq!(a.within5(), 0.75);
    // Nearest rank: ceil(0.9 · 4) = 4th of 1, 2, 3, 6.
    assert_eq!(a.p90_abs(), 6.0);
    assert_eq!(a.coverage(), Some(2.0 / 3.0));
    assert_eq!(Acc::default().coverage(), None);
}

#[test]
fn the_workshop_values_repeat_beyond_ten_stores() {
    assert_eq!(workshop_prior(1), Some(15));
    assert_eq!(workshop_prior(10), Some(6));
    assert_eq!(workshop_prior(11), Some(15));
    assert_eq!(workshop_prior(13), Some(7));
}

#[test]
fn a_day_is_deterministic_and_scores_every_predictor() {
    let t = templates();
    let a = run_day(&t, 4, 7, 24, Kitchen::Stationary);
    let b = run_day(&t, 4, 7, 24, Kitchen::Stationary);
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 500, "{}", a.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.answers, y.answers);
        assert_eq!(x.wait_minutes, y.wait_minutes);
    }
    let names = predictor_names();
    assert!(a.iter().all(|o| o.answers.len() == names.len()));
    // The oracle always answers, with a p90; the workshop's values always stand.
    assert!(
        a.iter()
            .all(|o| o.answers[oracle_column()].is_some_and(|x| x.p90_minutes.is_some()))
    );
    assert!(a.iter().all(|o| o.answers[0].is_some()));
    // Cancelled orders are scored against the wait they would have had.
    let cancelled: Vec<_> = a
        .iter()
        .filter(|o| o.outcome == Outcome::Cancelled)
        .collect();
    assert!(!cancelled.is_empty());
    assert!(cancelled.iter().all(|o| o.wait_minutes > 3.0));
    let r = Report::new(&a, Estimator::Backlog);
    let all = r.acc(Group::All, oracle_column()).unwrap();
    let rolling = r.acc(Group::All, rolling_mean_column()).unwrap();
    assert!(all.n() > 0 && all.n() == rolling.n());
    // The oracle knows the true queue: nothing that reads only the events beats it.
    for (c, name) in names.iter().enumerate() {
        assert!(
            r.acc(Group::All, c).unwrap().mae() >= all.mae() - 1e-9,
            "{name}"
        );
    }
    let answered = cancelled
        .iter()
        .filter(|o| o.answers.iter().all(Option::is_some))
        .count();
    assert!(answered > 0);
    assert_eq!(r.acc(Group::Cancelled, 0).map(Acc::n), Some(answered));
}

#[test]
fn changing_kitchens_change_the_day() {
    let t = templates();
    let waits = |k| {
        let d = run_day(&t, 3, 2, 24, k);
        d.iter().map(|o| o.wait_minutes).sum::<f64>() / d.len() as f64
    };
    let stationary = waits(Kitchen::Stationary);
    assert_ne!(stationary, waits(Kitchen::Shifts));
    assert_ne!(stationary, waits(Kitchen::Drift));
}

#[test]
fn the_markdown_names_every_predictor_and_the_goals() {
    let t = templates();
    let day = run_day(&t, 3, 1, 24, Kitchen::Stationary);
    let md = Report::new(&day, Estimator::Backlog).markdown(Kitchen::Stationary, 3, &[1], 24);
    for name in predictor_names() {
        assert!(md.contains(&format!("| {name} |")), "{name}");
    }
    for goal in [
        "ramp-up + peak MAE",
        "gap closed overall",
        "15-min bucket",
        "p90 coverage 87–93 %",
    ] {
        assert!(md.contains(goal), "{goal}");
    }
    assert!(
        md.contains("**peak**") && md.contains("**0 ahead**"),
        "{md}"
    );
}

#[test]
fn the_plot_is_a_png() {
    let t = templates();
    let day = run_day(&t, 2, 1, 24, Kitchen::Stationary);
    let path = std::env::temp_dir().join(format!("waittimes-score-{}.png", std::process::id()));
    plot::draw(&path, &day, 1, Estimator::Backlog).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(plot::draw(&path, &day, 99, Estimator::Backlog).is_err());
}
