//! Transactions against the model: a commit either applies all of the
//! transaction's changes on top of what others committed meanwhile, or
//! fails with EAGAIN and changes nothing; it never fails without a
//! concurrent change, and always fails when a node the transaction read
//! was changed after the read.

use alloc::vec::Vec;

use proptest::prelude::*;

use super::model::{self, Tree};
use super::Client;
use crate::Store;

const PATHS: [&str; 5] = ["/t/a", "/t/b", "/t/c", "/t/c/d", "/t/e/f"];

#[derive(Clone, Debug)]
enum Op {
    TxWrite(usize, u8),
    TxRm(usize),
    TxRead(usize),
    OtherWrite(usize, u8),
    OtherRm(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        (p.clone(), 0u8..3).prop_map(|(p, v)| Op::TxWrite(p, v)),
        p.clone().prop_map(Op::TxRm),
        p.clone().prop_map(Op::TxRead),
        (p.clone(), 0u8..3).prop_map(|(p, v)| Op::OtherWrite(p, v)),
        p.prop_map(Op::OtherRm),
    ]
}

fn run(initial: &[(usize, u8)], ops: &[Op]) -> Result<(), TestCaseError> {
    let mut s = Store::new();
    let mut tx_client = Client::local(&mut s, 1);
    let mut other = Client::local(&mut s, 2);
    other.write(&mut s, 0, "/t", "").unwrap();
    for (p, v) in initial {
        other.write(&mut s, 0, PATHS[*p], &v.to_string()).unwrap();
    }
    let mut global = model::snapshot(&s, "/t");
    let t = tx_client.start(&mut s).unwrap();
    // The transaction's own view, valid while nobody else has changed.
    let mut tx_view: Tree = global.clone();
    let mut undisturbed = true;
    let mut changed_after_read = false;
    let mut read_paths: Vec<&str> = Vec::new();
    let mut tx_ops: Vec<&Op> = Vec::new();
    for op in ops {
        match op {
            Op::TxWrite(p, v) => {
                let r = tx_client.write(&mut s, t, PATHS[*p], &v.to_string());
                model::write(&mut tx_view, PATHS[*p], &v.to_string());
                prop_assert!(r.is_ok(), "dom0 may always write: {r:?}");
                tx_ops.push(op);
            }
            Op::TxRm(p) => {
                let r = tx_client.rm(&mut s, t, PATHS[*p]);
                let m = model::rm(&mut tx_view, PATHS[*p]);
                if undisturbed {
                    prop_assert_eq!(r.is_ok(), m.is_ok());
                }
                tx_ops.push(op);
            }
            Op::TxRead(p) => {
                let r = tx_client.read(&mut s, t, PATHS[*p]);
                if undisturbed {
                    prop_assert_eq!(
                        r.ok(),
                        tx_view.get(PATHS[*p]).cloned(),
                        "reads see the transaction's view"
                    );
                }
                read_paths.push(PATHS[*p]);
            }
            Op::OtherWrite(p, v) => {
                other.write(&mut s, 0, PATHS[*p], &v.to_string()).unwrap();
                model::write(&mut global, PATHS[*p], &v.to_string());
                undisturbed = false;
                changed_after_read |= read_paths.contains(&PATHS[*p]);
            }
            Op::OtherRm(p) => {
                let before = global.clone();
                let _ = other.rm(&mut s, 0, PATHS[*p]);
                let gone = model::rm(&mut global, PATHS[*p]).unwrap_or_default();
                undisturbed &= before == global;
                changed_after_read |= read_paths.iter().any(|r| gone.iter().any(|g| g == r));
            }
        }
    }
    prop_assert_eq!(&model::snapshot(&s, "/t"), &global, "isolated until commit");
    let committed = tx_client.end(&mut s, t, true);
    let after = model::snapshot(&s, "/t");
    match committed {
        Ok(()) => {
            prop_assert!(
                !changed_after_read,
                "a read node changed but the commit succeeded"
            );
            let mut expect = global.clone();
            for op in tx_ops {
                match op {
                    Op::TxWrite(p, v) => model::write(&mut expect, PATHS[*p], &v.to_string()),
                    Op::TxRm(p) => {
                        let _ = model::rm(&mut expect, PATHS[*p]);
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(
                after,
                expect,
                "all of the transaction, on top of the others' changes"
            );
        }
        Err(e) => {
            prop_assert_eq!(e.as_str(), "EAGAIN");
            prop_assert!(!undisturbed, "EAGAIN without any concurrent change");
            prop_assert_eq!(after, global, "no partial effect");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn transactions_commit_whole_or_eagain(
        initial in proptest::collection::vec((0..PATHS.len(), 0u8..3), 0..4),
        ops in proptest::collection::vec(op(), 0..12),
    ) {
        run(&initial, &ops)?;
    }
}

/// Two transactions from two guests on the same node: exactly one
/// EAGAIN, and the retry succeeds (the scenario, on the host).
#[test]
fn concurrent_guest_transactions_one_eagain_then_retry() {
    let (mut s, mut dom0, mut d) = super::with_domains(&[1, 2]);
    dom0.write(&mut s, 0, "/shared", "0").unwrap();
    dom0.set_perms(&mut s, "/shared", &["n0", "b1", "b2"])
        .unwrap();
    let (a, b) = d.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    let ta = a.start(&mut s).unwrap();
    let tb = b.start(&mut s).unwrap();
    let va: u32 = a.read(&mut s, ta, "/shared").unwrap().parse().unwrap();
    let vb: u32 = b.read(&mut s, tb, "/shared").unwrap().parse().unwrap();
    a.write(&mut s, ta, "/shared", &(va + 1).to_string())
        .unwrap();
    b.write(&mut s, tb, "/shared", &(vb + 1).to_string())
        .unwrap();
    assert_eq!(a.end(&mut s, ta, true), Ok(()));
    assert_eq!(b.end(&mut s, tb, true), Err("EAGAIN".into()));
    let tb = b.start(&mut s).unwrap();
    let vb: u32 = b.read(&mut s, tb, "/shared").unwrap().parse().unwrap();
    b.write(&mut s, tb, "/shared", &(vb + 1).to_string())
        .unwrap();
    assert_eq!(b.end(&mut s, tb, true), Ok(()));
    assert_eq!(dom0.read(&mut s, 0, "/shared").unwrap(), "2");
}
