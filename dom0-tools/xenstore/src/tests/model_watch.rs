//! Watches against the model: an event on registration, one per change
//! at or under a watched path (and per removed node watched exactly),
//! none after UNWATCH.

use alloc::string::String;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::model::{self, Tree};
use super::Client;
use crate::path::is_under;
use crate::Store;

const PATHS: [&str; 6] = ["/", "/w", "/w/a", "/w/a/b", "/w/c", "/w/a/b/d"];
const TOKENS: [&str; 2] = ["t0", "t1"];

#[derive(Clone, Debug)]
enum Op {
    Watch(usize, usize),
    Unwatch(usize, usize),
    Write(usize),
    Mkdir(usize),
    Rm(usize),
}

fn op() -> impl Strategy<Value = Op> {
    // Changes only below "/w" ("/" is watched, never written or removed).
    let p = 0..PATHS.len();
    let changed = 1..PATHS.len();
    let t = 0..TOKENS.len();
    prop_oneof![
        (p.clone(), t.clone()).prop_map(|(p, t)| Op::Watch(p, t)),
        (p, t).prop_map(|(p, t)| Op::Unwatch(p, t)),
        changed.clone().prop_map(Op::Write),
        changed.clone().prop_map(Op::Mkdir),
        changed.prop_map(Op::Rm),
    ]
}

type Events = Vec<(String, String)>;

/// Events the model expects for a change at `path` (subtree match) and
/// the removal of `gone` (exact matches).
fn expected(watches: &[(usize, usize)], path: &str, gone: &[String]) -> Events {
    let mut out = Events::new();
    for &(w, t) in watches {
        if is_under(path, PATHS[w]) {
            out.push((path.into(), TOKENS[t].into()));
        }
        for g in gone
            .iter()
            .filter(|g| g.as_str() != path && g.as_str() == PATHS[w])
        {
            out.push((g.clone(), TOKENS[t].into()));
        }
    }
    // xenstored drops an event identical to one still pending, so two
    // watches with the same token on "/" and "/w" yield one event.
    out.sort();
    out.dedup();
    out
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut s = Store::new();
    let mut w = Client::local(&mut s, 1);
    let mut c = Client::local(&mut s, 2);
    let mut tree: Tree = model::snapshot(&s, "/w");
    let mut watches: Vec<(usize, usize)> = Vec::new();
    for op in ops {
        let want = match *op {
            Op::Watch(p, t) => {
                let r = w.watch(&mut s, PATHS[p], TOKENS[t]);
                if watches.contains(&(p, t)) {
                    prop_assert_eq!(r, Err("EEXIST".into()));
                    Events::new()
                } else {
                    prop_assert_eq!(r, Ok(()));
                    watches.push((p, t));
                    alloc::vec![(PATHS[p].into(), TOKENS[t].into())]
                }
            }
            Op::Unwatch(p, t) => {
                let r = w.unwatch(&mut s, PATHS[p], TOKENS[t]);
                match watches.iter().position(|x| *x == (p, t)) {
                    Some(i) => {
                        prop_assert_eq!(r, Ok(()));
                        watches.remove(i);
                    }
                    None => prop_assert_eq!(r, Err("ENOENT".into())),
                }
                Events::new()
            }
            Op::Write(p) => {
                c.write(&mut s, 0, PATHS[p], "v").unwrap();
                model::write(&mut tree, PATHS[p], "v");
                expected(&watches, PATHS[p], &[])
            }
            Op::Mkdir(p) => {
                c.mkdir(&mut s, 0, PATHS[p]).unwrap();
                if tree.contains_key(PATHS[p]) {
                    Events::new()
                } else {
                    model::write(&mut tree, PATHS[p], "");
                    expected(&watches, PATHS[p], &[])
                }
            }
            Op::Rm(p) => {
                let r = c.rm(&mut s, 0, PATHS[p]);
                let existed = tree.contains_key(PATHS[p]);
                let m = model::rm(&mut tree, PATHS[p]);
                prop_assert_eq!(r.is_ok(), m.is_ok());
                match m {
                    Ok(gone) if existed => expected(&watches, PATHS[p], &gone),
                    _ => Events::new(),
                }
            }
        };
        w.drain(&mut s);
        let mut got = w.take_events();
        got.sort();
        prop_assert_eq!(got, want, "after {:?}", op);
        prop_assert_eq!(model::snapshot(&s, "/w"), tree.clone());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn watches_fire_as_the_model_says(ops in proptest::collection::vec(op(), 0..20)) {
        run(&ops)?;
    }
}

/// Found by the property: two watches with one token, on a path and its
/// ancestor, give one event for a change below both (xenstored's
/// `send_event` drops an identical pending event).
#[test]
fn identical_pending_events_are_sent_once() {
    let mut s = Store::new();
    let mut w = Client::local(&mut s, 1);
    w.watch(&mut s, "/", "t0").unwrap();
    w.watch(&mut s, "/w", "t0").unwrap();
    w.take_events();
    w.write(&mut s, 0, "/w", "v").unwrap();
    assert_eq!(
        w.take_events(),
        alloc::vec![(String::from("/w"), String::from("t0"))]
    );
}
